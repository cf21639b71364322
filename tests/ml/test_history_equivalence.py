"""crm.history writes the feature snapshots a day-by-day build writes (a small bank across a
month end: the same features table and the same customer_360 rows of the snapshot days)."""

from __future__ import annotations

import datetime as dt

import psycopg

from crm.settings import get_settings


def _owner(url: str):
    return psycopg.connect(url, autocommit=True)


def _rows(url: str, query: str) -> list[tuple]:
    with _owner(url) as conn:
        return conn.execute(query).fetchall()


def test_history_build_writes_the_feature_snapshots_daily_builds_write(
    warehouse, pg_server, tmp_path, monkeypatch
):
    """Day by day (ingest, dbt build of the day) vs crm.history on the same bank, across a
    month end: the same features table and the same customer_360 rows of the snapshot days."""
    from crm.generator import generate
    from crm.history import build_history
    from crm.ingest.service import ingest_day
    from crm.transform import run_dbt
    from crm.warehouse import bootstrap, with_database

    first, last = dt.date(2025, 1, 29), dt.date(2025, 2, 3)
    monkeypatch.setenv("CRM_LANDING_DIR", str(tmp_path / "landing"))
    get_settings.cache_clear()
    generate(customers=150, start=first, days=6, seed=5, out=tmp_path / "landing", truth=tmp_path / "truth")
    daily_url = warehouse
    for n in range(6):
        day = first + dt.timedelta(days=n)
        ingest_day(day)
        refresh = ["--full-refresh"] if n == 0 else []
        run_dbt(
            ["build", *refresh, "--exclude-resource-type", "test", "unit_test"],
            extra_env={"CRM_RUN_DATE": day.isoformat(), "CRM_TEST_WINDOW_START": day.isoformat()},
        )

    name = daily_url.rsplit("/", 1)[1] + "_h"
    admin = with_database(pg_server.url(), "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    history_url = with_database(pg_server.url(), name)
    try:
        bootstrap(history_url, get_settings())
        monkeypatch.setenv("WAREHOUSE_URL", history_url)
        get_settings.cache_clear()
        result = build_history(first, last, echo=lambda line: None)
        assert result.month_ends == [dt.date(2025, 1, 31)] and result.days_loaded == 6
        features = "select * from marts.ml_features_customer_monthly order by month_start, customer_id"
        c360 = (
            "select * from marts.customer_360 where snapshot_date in ('2025-01-31', '2025-02-03')"
            " order by snapshot_date, customer_id"
        )
        daily_features, history_features = _rows(daily_url, features), _rows(history_url, features)
        assert {r[1] for r in daily_features} == {dt.date(2025, 1, 1), dt.date(2025, 2, 1)}
        assert history_features == daily_features
        assert _rows(history_url, c360) == _rows(daily_url, c360)
    finally:
        get_settings.cache_clear()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')
