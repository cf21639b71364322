"""The run record (audit.pipeline_runs) on a real warehouse: a generated bank loaded and gated."""

from __future__ import annotations

import datetime as dt
import json

from crm.generator import generate
from crm.pipeline_run import STAGES, format_summary, read_records, record_run
from crm.quality.gate import run_gate
from crm.quality.publish import publish
from crm.settings import get_settings
from tests.ingest.test_generated_bank import START, load_all

DAY = START + dt.timedelta(days=1)
RUN = "manual__2026-11-30T05:00:00+00:00"


def test_record_run_counts_the_days_loads_and_gates_and_replaces_its_row(
    tmp_path, warehouse, db, monkeypatch
):
    landing = tmp_path / "landing"
    generate(customers=200, start=START, days=2, seed=7, out=landing, truth=tmp_path / "truth")
    monkeypatch.setenv("CRM_LANDING_DIR", str(landing))
    get_settings.cache_clear()
    assert not load_all(landing, 2)
    for gate in ("raw", "recon"):
        run_gate(gate, DAY, docs=False, pipeline_run_id="ingest_run")
    # A refused file of the day and a mart validation with a critical failure.
    db.execute(
        "insert into audit.load_log (feed, business_date, file_path, status, rule)"
        " values ('accounts', %s, '/landing/accounts/bad.csv', 'refused', 'schema')",
        (DAY,),
    )
    mart = db.execute(
        "insert into dq.validation_runs (gate, subject, business_date, suite, success, critical_failures,"
        " warnings, pipeline_run_id, started_at) values ('mart', 'marts', %s, 'mart', false, 1, 2, %s,"
        " clock_timestamp() - interval '3 seconds') returning run_id",
        (DAY, RUN),
    ).fetchone()[0]
    db.execute(
        "insert into dq.expectation_results (run_id, check_name, expectation_type, severity, success)"
        " values (%s, 'mart.abc_shares', 'expect_x', 'critical', false)",
        (mart,),
    )

    record = record_run(DAY, RUN)

    loads = db.execute(
        "select feed, rows_loaded, rows_quarantined from audit.load_log"
        " where business_date = %s and status = 'loaded'",
        (DAY,),
    ).fetchall()
    assert loads
    rows = db.execute(
        "select business_date, rows, rows_quarantined, files_refused, gates, published, stage_seconds,"
        " model_version from audit.pipeline_runs"
    ).fetchall()
    assert len(rows) == 1
    day, loaded, quarantined, refused, gates, published, seconds, model_version = rows[0]
    assert day == DAY
    assert loaded == {"per_feed": {f: n for f, n, _ in sorted(loads)}, "total": sum(n for _, n, _ in loads)}
    assert quarantined == sum(q for *_, q in loads)
    assert refused == 1
    runs = db.execute(
        "select gate, count(*), count(*) filter (where success), sum(critical_failures), sum(warnings)"
        " from dq.validation_runs where business_date = %s group by gate",
        (DAY,),
    ).fetchall()
    for gate, suites, passed, critical, warnings in runs:
        assert gates[gate]["suites"] == suites and gates[gate]["passed"] == passed
        assert (gates[gate]["critical"], gates[gate]["warnings"]) == (critical, warnings)
    assert gates["mart"]["failed"] == ["mart.abc_shares"]
    assert gates["raw"]["suites"] > 1 and gates["recon"]["suites"] >= 1
    assert published is False and model_version is None
    # Without a caller's seconds: ingest and the gates from the warehouse's timestamps.
    assert set(seconds) == set(STAGES)
    assert seconds["ingest"] > 0 and seconds["gate_raw"] > 0 and seconds["gate_mart"] >= 3
    assert seconds["dbt"] is None and seconds["publish"] is None
    assert record.stage_seconds == seconds

    # Re-recording replaces the row: the day is now published and the caller gives seconds.
    publish(DAY, RUN)
    given = {"ingest": 12.34, "dbt": 40.0, "publish": 0.5, "report": 2.0}
    record_run(DAY, RUN, given)
    rows = db.execute("select run_id, published, stage_seconds, rows from audit.pipeline_runs").fetchall()
    assert len(rows) == 1
    run_id, published, seconds, again = rows[0]
    assert run_id == RUN and published is True and again == loaded
    assert seconds["ingest"] == 12.3 and seconds["dbt"] == 40.0 and seconds["report"] == 2.0
    assert seconds["gate_raw"] > 0  # still from the warehouse

    (read,) = read_records([RUN])
    text = format_summary(read)
    assert f"{DAY}" in text and "published: yes" in text and "ingest 12.3s" in text
    assert f"{loaded['total']:,} loaded" in text and "1 file(s) refused" in text
    assert "mart 0/1 passed, 2 warn, 1 critical (mart.abc_shares)" in text
    assert json.dumps(read.rows) == json.dumps(loaded)


def test_the_loader_may_read_the_record_but_not_write_it(warehouse, db):
    import psycopg
    import pytest

    from crm.warehouse import role_url

    record_run(DAY, RUN)  # an empty day is recorded too: nothing loaded, no gate
    with psycopg.connect(role_url("crm_loader")) as conn:
        assert conn.execute("select rows, gates, published from audit.pipeline_runs").fetchall() == [
            ({"per_feed": {}, "total": 0}, {}, False)
        ]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("delete from audit.pipeline_runs")
