"""The real crm_ingest DAG under `airflow dags test`, against a real PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from crm.orchestrate import run_dag
from crm.settings import get_settings
from tests.ingest.test_loader import CUSTOMERS, customer_row, write_csv

DAY = dt.date(2026, 1, 5)


@pytest.fixture
def landing(tmp_path, monkeypatch, warehouse):
    monkeypatch.setenv("CRM_LANDING_DIR", str(tmp_path / "landing"))
    get_settings.cache_clear()
    return tmp_path / "landing"


def test_missing_file_fails_only_its_feed_and_the_feeds_that_need_it(landing, db):
    day_dir = landing / "core_customers" / DAY.isoformat()
    write_csv(day_dir / CUSTOMERS.file, CUSTOMERS.column_names, [customer_row(i) for i in range(1, 21)])
    fx = landing / "fx_rates" / DAY.isoformat() / "fx_rates.csv"
    fx.parent.mkdir(parents=True)
    fx.write_text(
        "rate_date,currency,reporting_currency,rate\n"
        f"{DAY},CNY,HKD,1.08\n{DAY},HKD,HKD,1\n{DAY},USD,HKD,7.8\n"
    )
    outcome = run_dag("crm_ingest", DAY)
    assert not outcome.ok, "missing feeds must fail the run"
    loaded = dict(
        db.execute("select feed, rows_loaded from audit.load_log where status = 'loaded'").fetchall()
    )
    assert loaded == {"core_customers": 20, "fx_rates": 3}
    missing = {r[0] for r in db.execute("select feed from audit.load_log where rule = 'FILE_MISSING'")}
    # Feeds whose own file is missing are refused; feeds waiting on core_accounts never started.
    assert {"core_accounts", "branch_visits", "mobile_events"} <= missing
    assert "core_customers" not in missing and "fx_rates" not in missing
    assert db.execute("select count(*) from raw.core_customers").fetchone() == (20,)
