"""Retention per layer on a real warehouse: raw day partitions, quarantined rows, landing day
folders and log files older than each layer's cutoff (counted back from the business day) are
deleted, the rest kept, the counts recorded; the loader names a day, never a cutoff."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from crm.settings import get_settings

DAY = dt.date(2026, 10, 29)
RUN = "asset_triggered__2026-10-30T01:00:00+00:00"
POLICY = {"RAW": "300", "QUARANTINE": "10", "LANDING": "5", "LOG": "3"}
RAW_OLD = [dt.date(2025, 12, 30), dt.date(2026, 1, 1)]  # cutoff DAY - 300 = 2026-01-02
RAW_KEPT = [dt.date(2026, 1, 2), dt.date(2026, 10, 28), DAY]
Q_OLD, Q_KEPT = [dt.date(2026, 10, 1), dt.date(2026, 10, 18)], [dt.date(2026, 10, 19), DAY]
# The transformer's history (raw's cutoff 2026-01-02): a day-grained mart, an SCD2 snapshot,
# and a table it does not own (the owner's: left alone).
HISTORY = [
    ("marts", "fct_kept_days", "business_date"),
    ("snapshots", "people_snapshot", "dbt_valid_to"),
    ("marts", "not_the_transformers", "business_date"),
]


def raw_day(db, feed: str, day: dt.date, rows: int) -> str:
    """The day's partition of ``feed`` (the owner's function), with ``rows`` rows."""
    part = db.execute("select raw.ensure_partition(%s, %s)", (feed, day)).fetchone()[0]
    columns = "_business_date, _source_file, _file_sha256, _line_number, _load_id, _loaded_at"
    for n in range(rows):
        db.execute(
            f"insert into raw.{feed} ({columns}) values (%s, 'f.csv', 'x', %s, 1, now())", (day, n + 1)
        )
    return part


def quarantine_rows(db, feed: str, day: dt.date, rows: int) -> None:
    for n in range(rows):
        db.execute(
            f"insert into quarantine.{feed} (_business_date, _source_file, _file_sha256, _line_number,"
            " _load_id, _loaded_at, reason) values (%s, 'f.csv', 'x', %s, 1, now(), 'NOT_ACCEPTED')",
            (day, n + 1),
        )


def exists(db, relation: str) -> bool:
    return db.execute("select to_regclass(%s) is not null", (relation,)).fetchone()[0]


def aged(path: Path, when: dt.datetime, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (when.timestamp(), when.timestamp()))
    return path


@pytest.fixture
def bank(warehouse, db, tmp_path, monkeypatch):
    """Short retention synced into the policy, old and recent raw, quarantine, landing and logs."""
    from crm.dates import BANK_TZ
    from crm.warehouse.migrate import sync_retention

    for layer, days in POLICY.items():
        monkeypatch.setenv(f"CRM_RETAIN_{layer}_DAYS", days)
    monkeypatch.setenv("CRM_LANDING_DIR", str(tmp_path / "landing"))
    get_settings.cache_clear()
    sync_retention(warehouse, get_settings())
    db.execute(
        "insert into audit.load_log (feed, business_date, file_path, status, rows_in_file, rows_loaded,"
        " rows_quarantined) values ('fx_rates', %s, 'fx_rates.csv', 'loaded', 3, 3, 0)",
        (DAY,),
    )
    for i, day in enumerate(RAW_OLD + RAW_KEPT):
        raw_day(db, "fx_rates", day, 2 + i)
    raw_day(db, "core_customers", RAW_OLD[0], 1)  # CDC: kept whole by the default policy
    for i, day in enumerate(Q_OLD + Q_KEPT):
        quarantine_rows(db, "fx_rates", day, 1 + i)
    # Things that are not a registered feed's day partition or quarantine table.
    db.execute("create table raw.notes_p20200101 (_business_date date)")
    db.execute("create table quarantine.stray (_business_date date)")
    db.execute("insert into quarantine.stray values ('2020-01-01')")
    from crm.warehouse import role_url

    with psycopg.connect(role_url("crm_transformer", get_settings()), autocommit=True) as dbt:
        dbt.execute("create table marts.fct_kept_days (business_date date, customer_id text)")
        dbt.execute(
            "insert into marts.fct_kept_days values ('2025-12-30', 'a'), ('2026-01-01', 'b'),"
            " ('2026-01-02', 'c'), (%s, 'd')",
            (DAY,),
        )
        dbt.execute(
            "create table snapshots.people_snapshot (customer_id text, city text, dbt_valid_to timestamp)"
        )
        dbt.execute(
            "insert into snapshots.people_snapshot values ('a', 'old city', '2025-12-31 09:00'),"
            " ('a', 'new city', null), ('b', 'city', '2026-06-01 00:00')"
        )
    db.execute("create table marts.not_the_transformers (business_date date)")
    db.execute("insert into marts.not_the_transformers values ('2020-01-01')")

    landing = tmp_path / "landing"
    aged(landing / "fx_rates" / "2026-10-23" / "fx_rates.csv", dt.datetime.now())  # cutoff 10-24
    aged(landing / "fx_rates" / "2026-10-23" / "fx_rates.csv.control.json", dt.datetime.now())
    aged(landing / "core_customers" / "2026-01-05" / "customers.csv", dt.datetime.now())
    aged(landing / "fx_rates" / "2026-10-24" / "fx_rates.csv", dt.datetime.now())
    aged(landing / "fx_rates" / "README.txt", dt.datetime.now())
    logs = get_settings().home / "logs" / f"retention-{warehouse.rsplit('/', 1)[-1]}"
    old_logs = [  # log cutoff: DAY - 3 = 2026-10-26, bank time
        aged(logs / "old.log", dt.datetime(2026, 10, 20, tzinfo=BANK_TZ)),
        aged(logs / "dbt" / "run1" / "dbt.log", dt.datetime(2026, 10, 25, 23, tzinfo=BANK_TZ)),
    ]
    new_logs = [
        aged(logs / "recent.log", dt.datetime(2026, 10, 26, 1, tzinfo=BANK_TZ)),
        aged(logs / "now.log", dt.datetime.now()),
    ]
    return {"landing": landing, "old_logs": old_logs, "new_logs": new_logs, "logs": logs}


def test_retention_deletes_exactly_what_is_older_than_each_cutoff_and_records_it(bank, db):
    from crm.pipeline_run import format_summary, record_run
    from crm.privacy.retention import apply_retention

    dry = apply_retention(DAY, dry_run=True, run_id=RUN, history=HISTORY)
    assert all(exists(db, f"raw.fx_rates_p{d:%Y%m%d}") for d in RAW_OLD), "a dry run deletes nothing"
    assert all(p.exists() for p in bank["old_logs"])
    assert db.execute("select count(*) from audit.retention_runs").fetchone()[0] == 0

    result = apply_retention(DAY, run_id=RUN, history=HISTORY)

    raw, quarantine = result.layers["raw"], result.layers["quarantine"]
    assert (raw.cutoff, quarantine.cutoff) == (dt.date(2026, 1, 2), dt.date(2026, 10, 19))
    assert (raw.partitions, raw.rows) == (2, 2 + 3)
    assert quarantine.rows == 1 + 2
    assert result.layers["landing"].files == 3 and result.layers["logs"].files == 2
    assert (result.layers["history"].cutoff, result.layers["history"].rows) == (raw.cutoff, 2 + 1)
    assert {k: (v.partitions, v.rows, v.files) for k, v in dry.layers.items()} == {
        k: (v.partitions, v.rows, v.files) for k, v in result.layers.items()
    }, "the dry run counted what the run deleted"

    assert not any(exists(db, f"raw.fx_rates_p{d:%Y%m%d}") for d in RAW_OLD)
    assert all(exists(db, f"raw.fx_rates_p{d:%Y%m%d}") for d in RAW_KEPT)
    assert exists(db, f"raw.core_customers_p{RAW_OLD[0]:%Y%m%d}"), "a CDC feed is kept whole"
    assert exists(db, "raw.notes_p20200101"), "not a partition of a registered feed"
    assert db.execute("select count(*) from quarantine.stray").fetchone()[0] == 1
    days = db.execute("select _business_date, count(*) from quarantine.fx_rates group by 1 order by 1")
    assert days.fetchall() == [(Q_KEPT[0], 3), (DAY, 4)]
    landing = bank["landing"]
    assert not (landing / "fx_rates" / "2026-10-23").exists()
    assert not (landing / "core_customers" / "2026-01-05").exists()
    assert (landing / "fx_rates" / "2026-10-24" / "fx_rates.csv").exists()
    assert (landing / "fx_rates" / "README.txt").exists()
    assert not any(p.exists() for p in bank["old_logs"]) and all(p.exists() for p in bank["new_logs"])
    assert not (bank["logs"] / "dbt").exists(), "folders left empty are removed"
    assert db.execute("select count(*) from audit.load_log").fetchone()[0] == 1, "the ledger stays"
    kept_days = db.execute("select business_date from marts.fct_kept_days order by 1").fetchall()
    assert kept_days == [(dt.date(2026, 1, 2),), (DAY,)], "the mart keeps what raw keeps"
    versions = db.execute("select customer_id, city from snapshots.people_snapshot order by 1, 2").fetchall()
    assert versions == [("a", "new city"), ("b", "city")], "a version ended before the cutoff is gone"
    assert db.execute("select count(*) from marts.not_the_transformers").fetchone()[0] == 1

    recorded = db.execute(
        "select layer, cutoff, partitions_dropped, rows_deleted, files_deleted, applied_by"
        " from audit.retention_runs where run_id = %s order by layer",
        (RUN,),
    ).fetchall()
    assert recorded == [
        ("history", dt.date(2026, 1, 2), 0, 3, 0, "crm_transformer"),
        ("landing", dt.date(2026, 10, 24), 0, 0, 3, "crm_loader"),
        ("logs", dt.date(2026, 10, 26), 0, 0, 2, "crm_loader"),
        ("quarantine", dt.date(2026, 10, 19), 0, 3, 0, "crm_loader"),
        ("raw", dt.date(2026, 1, 2), 2, 5, 0, "crm_loader"),
    ]
    record = record_run(DAY, RUN)
    stored = db.execute("select retention from audit.pipeline_runs where run_id = %s", (RUN,)).fetchone()[0]
    assert stored == record.retention
    assert stored["raw"] == {
        "retain_days": 300,
        "cutoff": "2026-01-02",
        "partitions_dropped": 2,
        "rows_deleted": 5,
        "files_deleted": 0,
    }
    assert stored["landing"]["files_deleted"] == 3 and stored["quarantine"]["rows_deleted"] == 3
    assert "raw 2 partitions / 5 rows" in format_summary(record)

    again = apply_retention(DAY, run_id="second", history=HISTORY)
    assert [(r.partitions, r.rows, r.files) for r in again.layers.values()] == [(0, 0, 0)] * 5


def test_the_loader_names_a_day_never_a_cutoff_or_a_table(bank, db):
    from crm.warehouse import role_url

    with psycopg.connect(role_url("crm_loader", get_settings()), autocommit=True) as loader:
        for statement in (
            "select * from private.retention_policy",
            "update private.retention_policy set raw_days = 1",
            "insert into audit.retention_runs (business_date, layer, retain_days, cutoff)"
            " values ('2026-10-29', 'raw', 1, '2026-10-28')",
            "drop table raw.fx_rates_p20260102",
            "delete from raw.fx_rates",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                loader.execute(statement)
        with pytest.raises(psycopg.errors.UndefinedFunction):  # no cutoff, no table to name
            loader.execute("select * from audit.apply_retention(%s, null, false, %s)", (DAY, DAY))
        arguments = loader.execute(
            "select pg_get_function_identity_arguments('audit.apply_retention'::regproc)"
        ).fetchone()[0]
        assert arguments == "business_day date, run_id text, dry_run boolean", "a day, a label, a dry run"
        with pytest.raises(psycopg.errors.InvalidParameterValue):  # not a file layer
            loader.execute("select audit.record_file_retention(%s, 'raw', 9)", (DAY,))
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="after the last loaded day"):
            loader.execute("select * from audit.apply_retention(%s)", (DAY + dt.timedelta(days=3000),))
    assert all(exists(db, f"raw.fx_rates_p{d:%Y%m%d}") for d in RAW_OLD), "nothing deleted"
    assert db.execute("select raw_days from private.retention_policy").fetchone()[0] == 300


def test_a_raw_retention_shorter_than_the_marts_lookback_is_refused(warehouse, db, monkeypatch):
    from crm.privacy.retention import RetentionSettingError, longest_lookback_days
    from crm.warehouse.migrate import sync_retention

    needed, why = longest_lookback_days()
    assert needed == 90 + 6 * 31 and "churn_horizon_days" in why
    monkeypatch.setenv("CRM_RETAIN_RAW_DAYS", str(needed))
    get_settings.cache_clear()
    with pytest.raises(
        RetentionSettingError, match=rf"CRM_RETAIN_RAW_DAYS={needed} is too short.*{needed + 1}"
    ):
        sync_retention(warehouse, get_settings())
    assert db.execute("select raw_days from private.retention_policy").fetchone()[0] == 2557

    from crm.cli import app

    result = CliRunner().invoke(app, ["privacy", "retain", "--date", DAY.isoformat()])
    assert result.exit_code == 2 and "CRM_RETAIN_RAW_DAYS" in result.output
    monkeypatch.setenv("CRM_RETAIN_RAW_DAYS", str(needed + 1))
    monkeypatch.setenv("CRM_RETAIN_RAW_KEEP_FEEDS", "core_customers,no_such_feed")
    get_settings.cache_clear()
    with pytest.raises(RetentionSettingError, match="no_such_feed"):
        sync_retention(warehouse, get_settings())


def test_crm_privacy_retain_prints_counts_per_layer(bank, db):
    from crm.cli import app

    dry = CliRunner().invoke(app, ["privacy", "retain", "--date", DAY.isoformat(), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "(dry run)" in dry.output and "would delete 2 partition(s), 5 row(s)" in dry.output
    assert exists(db, f"raw.fx_rates_p{RAW_OLD[0]:%Y%m%d}")
    done = CliRunner().invoke(app, ["privacy", "retain", "--date", DAY.isoformat()])
    assert done.exit_code == 0, done.output
    for line in ("raw", "quarantine", "landing", "logs", "history"):
        assert any(x.strip().startswith(line) for x in done.output.splitlines()), done.output
    assert "deleted 3 row(s)" in done.output and "deleted 3 file(s)" in done.output
    assert not exists(db, f"raw.fx_rates_p{RAW_OLD[0]:%Y%m%d}")


def test_the_log_cutoff_never_passes_the_wall_clock():
    from crm.dates import BANK_TZ
    from crm.privacy.retention import log_cutoff

    ahead = log_cutoff(dt.date(2027, 3, 1), 30, today=dt.date(2026, 11, 30))
    assert ahead == dt.datetime(2026, 10, 31, tzinfo=BANK_TZ)
    behind = log_cutoff(dt.date(2026, 1, 1), 30, today=dt.date(2026, 11, 30))
    assert behind == dt.datetime(2026, 1, 1, tzinfo=BANK_TZ)


def test_the_migration_downgrades_and_upgrades_again(warehouse, db):
    from alembic import command

    from crm.warehouse.migrate import alembic_config, migrate, sync_retention

    command.downgrade(alembic_config(warehouse), "0016")
    assert not exists(db, "audit.retention_runs") and not exists(db, "private.retention_policy")
    functions = (
        "select count(*) from pg_proc where pronamespace = 'audit'::regnamespace and proname ~ 'retention'"
    )
    assert db.execute(functions).fetchone()[0] == 0
    assert not db.execute(
        "select count(*) from information_schema.columns where table_name = 'pipeline_runs' and column_name = 'retention'"
    ).fetchone()[0]
    migrate(warehouse)
    sync_retention(warehouse, get_settings())
    assert db.execute("select raw_days, raw_keep_feeds from private.retention_policy").fetchone() == (
        2557,
        ["core_accounts", "core_customers"],
    )


def test_the_history_layer_covers_every_incremental_mart_and_snapshot_of_the_project():
    from crm.privacy.retention import _manifest, history_tables

    tables = history_tables(_manifest(get_settings()))
    for expected in (
        ("marts", "fct_transactions", "business_date"),
        ("marts", "customer_segments", "snapshot_date"),
        ("marts", "ml_features_customer_monthly", "month_start"),
        ("snapshots", "customers_snapshot", "dbt_valid_to"),
        ("snapshots", "accounts_snapshot", "dbt_valid_to"),
    ):
        assert expected in tables
    assert all(schema in ("marts", "intermediate", "snapshots") for schema, _, _ in tables)
