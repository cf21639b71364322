"""The trend features of marts.ml_features_customer_monthly are point in time, and a full
refresh writes the rows the month-end (incremental) builds wrote.

One small generated bank over two month ends (150 customers, 2025-01-01..02-10), built by
crm.history (the month-end builds a day-by-day run makes, see test_history_equivalence)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import psycopg
import pytest
from psycopg.rows import dict_row

from crm.settings import get_settings

FIRST, LAST = dt.date(2025, 1, 1), dt.date(2025, 2, 10)
JANUARY = dt.date(2025, 1, 31)
TREND = (
    "txn_30d_vs_3m",
    "txn_30d_vs_6m",
    "interactions_30d_vs_3m",
    "interactions_30d_vs_6m",
    "active_days_30d_vs_6m",
    "activity_slope_3m",
    "trb_vs_3m_avg",
    "trb_vs_6m_avg",
    "trb_drawdown_6m",
    "competitor_outflow_vs_trb_3m",
    "competitor_transfer_share_3m",
    "inbound_calls_30d",
    "unresolved_calls_90d",
    "complaint_calls_90d",
)
FEATURES = "select * from marts.ml_features_customer_monthly order by month_start, customer_id"


def _rows(url: str, query: str = FEATURES) -> list[dict]:
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query).fetchall()


def _rebuild(full_refresh: bool) -> None:
    from crm.transform import build

    build(LAST, full_refresh=full_refresh, select="ml_features_customer_monthly")


@pytest.fixture(scope="module")
def bank(pg_server, tmp_path_factory):
    from crm.history import build_history
    from crm.warehouse import bootstrap, with_database

    folder = tmp_path_factory.mktemp("trend-bank")
    name = f"t_trend_{dt.datetime.now():%H%M%S%f}"
    admin = with_database(pg_server.url(), "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = with_database(pg_server.url(), name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WAREHOUSE_URL", url)
        mp.setenv("CRM_LANDING_DIR", str(folder / "landing"))
        mp.setenv("CRM_TRUTH_DIR", str(folder / "truth"))
        get_settings.cache_clear()
        try:
            bootstrap(url, get_settings())
            build_history(FIRST, LAST, customers=150, seed=7, echo=lambda line: None)
            yield url
        finally:
            get_settings.cache_clear()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'drop database if exists "{name}" with (force)')


def test_trend_features_are_filled_and_plausible(bank):
    rows = _rows(bank)
    months = {r["month_start"] for r in rows}
    assert months == {dt.date(2025, 1, 1), dt.date(2025, 2, 1)}
    february = [r for r in rows if r["month_start"] == dt.date(2025, 2, 1)]
    assert {r["as_of_date"] for r in february} == {LAST}
    # February has 41 days of history: 30 recent days and 11 before them (fewer than the 14
    # needed), so the activity ratios say "no change" (1) and the slope (needs 90 days) 0.
    assert {r["txn_30d_vs_6m"] for r in february} <= {Decimal(1)}
    assert {r["activity_slope_3m"] for r in february} == {Decimal(0)}
    drawdowns = [r["trb_drawdown_6m"] for r in february if r["trb_drawdown_6m"] is not None]
    assert drawdowns and all(0 <= d <= 1 for d in drawdowns)
    assert any(d > 0 for d in drawdowns)
    shares = [
        r["competitor_transfer_share_3m"] for r in february if r["competitor_transfer_share_3m"] is not None
    ]
    assert shares and all(0 <= s <= 1 for s in shares)
    ratios = [r["trb_vs_6m_avg"] for r in february if r["trb_vs_6m_avg"] is not None]
    assert len(ratios) > len(february) // 2 and min(ratios) >= 0


def test_full_refresh_writes_the_rows_the_month_end_builds_wrote(bank, monkeypatch):
    monkeypatch.setenv("WAREHOUSE_URL", bank)
    get_settings.cache_clear()
    incremental = _rows(bank)
    _rebuild(full_refresh=True)
    assert _rows(bank) == incremental
    _rebuild(full_refresh=False)  # the daily run of the last day: rebuilds February only
    assert _rows(bank) == incremental


def test_changing_data_after_as_of_date_does_not_change_the_features(bank, monkeypatch):
    """Every fact after 31 January grows (more activity, triple balances, every transfer out
    to a competitor, a call a day): January's rows stay as they were, February's move."""
    monkeypatch.setenv("WAREHOUSE_URL", bank)
    get_settings.cache_clear()
    before = _rows(bank)
    with psycopg.connect(bank, autocommit=True) as conn:
        conn.execute(
            "update marts.fct_customer_activity_daily"
            " set txn_count = txn_count + 50, interactions = interactions + 50, trb_hkd = trb_hkd * 3,"
            " outflow_to_competitors_hkd = coalesce(outflow_to_competitors_hkd, 0) + 1000000"
            " where business_date > %s",
            (JANUARY,),
        )
        conn.execute(
            "update marts.fct_transactions set is_outflow_to_competitor = true"
            " where txn_type = 'transfer_out' and business_date > %s",
            (JANUARY,),
        )
        conn.execute(
            "update raw.contact_calls set first_contact_resolution = 'false', reason = 'complaint',"
            " direction = 'inbound' where _business_date > %s",
            (JANUARY,),
        )
    _rebuild(full_refresh=True)
    after = _rows(bank)
    assert len(after) == len(before)
    january = [(b, a) for b, a in zip(before, after, strict=True) if b["month_start"] == dt.date(2025, 1, 1)]
    february = [(b, a) for b, a in zip(before, after, strict=True) if b["month_start"] == dt.date(2025, 2, 1)]
    assert january and all(b == a for b, a in january)
    for column in ("trb_vs_3m_avg", "competitor_outflow_vs_trb_3m", "competitor_transfer_share_3m"):
        assert any(b[column] != a[column] for b, a in february), column
