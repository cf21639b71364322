"""crm run's progress lines (from airflow dags test's task lines) and its summary of a day."""

from __future__ import annotations

import datetime as dt

from crm.orchestrate import StageTracker
from crm.pipeline_run import RunRecord, format_summary, format_table

RUN = "manual__2026-11-30T04:55:56.804496+00:00"


def task_lines(task: str, ti: str, start: str, end: str, state: str = "success") -> list[str]:
    """What `airflow dags test` prints of one task (Airflow 3.3), noise between the lines."""
    return [
        f"2026-11-30T{start}Z [info     ] [DAG TEST] starting task_id={task} map_index=-1 [airflow.sdk]",
        f"2026-11-30T{start}Z [info     ] [DAG TEST] running task <TaskInstance: crm_transform.{task} {RUN}"
        f" [TaskInstanceState.SCHEDULED] ti_id={ti}> [airflow.sdk.definitions.dag] loc=dag.py:1504",
        f"2026-11-30T{start}Z [info     ] Task started  previous_state=queued ti_id={ti}",
        "[0m04:56:02  Running with dbt=1.11.16",
        f"2026-11-30T{end}Z [info     ] Task instance state updated    loc=task_instances.py:484"
        f" new_state={state} rows_affected=1 ti_id={ti}",
        f"2026-11-30T{end}Z [info     ] [DAG TEST] end task task_id={task} map_index=-1 [airflow.sdk]",
    ]


def test_each_stage_is_reported_as_it_finishes_with_the_seconds_of_its_tasks():
    seen = []
    tracker = StageTracker(lambda stage, state, seconds: seen.append((stage, state, seconds)))
    lines = [
        *task_lines("accounts.wait_for_file", "a1", "04:00:00.000", "04:00:01.000"),
        *task_lines("accounts.load", "a2", "04:00:01.000", "04:00:05.500"),
        *task_lines("txn.load", "a3", "04:00:05.500", "04:00:09.000"),
        *task_lines("gate_raw", "b1", "04:00:09.100", "04:00:19.100"),
        *task_lines("plan_run", "c1", "04:01:00.000", "04:01:01.000"),
        *task_lines("dbt_build", "c2", "04:01:01.000", "04:01:31.250"),
        *task_lines("gate_mart", "c3", "04:01:31.300", "04:01:40.300", state="failed"),
    ]
    for line in lines:
        tracker.feed(line + "\n")
    tracker.finish()
    assert seen == [
        ("ingest", "success", 9.0),  # reported when the first day-level task starts
        ("gate_raw", "success", 10.0),
        ("dbt", "success", 30.2),
        ("gate_mart", "failed", 9.0),
    ]
    assert tracker.run_id == RUN
    assert tracker.stage_seconds() == {"ingest": 9.0, "gate_raw": 10.0, "dbt": 30.2, "gate_mart": 9.0}


def test_a_failed_feed_is_reported_as_the_ingest_stage_at_the_end_and_other_tasks_only_when_not_ok():
    seen = []
    tracker = StageTracker(lambda stage, state, seconds: seen.append((stage, state, seconds)))
    for line in [
        *task_lines("accounts.load", "a2", "04:00:01.000", "04:00:02.000", state="failed"),
        *task_lines("txn.load", "a3", "04:00:01.000", "04:00:03.000"),
    ]:
        tracker.feed(line + "\n")
    tracker.finish()
    assert seen == [("ingest", "failed", 2.0)]


def record(**changes) -> RunRecord:
    base = {
        "run_id": RUN,
        "business_date": dt.date(2026, 1, 3),
        "stage_seconds": {
            "ingest": 21.4,
            "gate_raw": 9.8,
            "gate_recon": 4.1,
            "dbt": 30.2,
            "gate_mart": 11.0,
            "publish": 0.4,
            "report": None,
        },
        "rows": {"per_feed": {"accounts": 2000, "transactions": 10345}, "total": 12345},
        "rows_quarantined": 17,
        "files_refused": 1,
        "gates": {
            "raw": {"suites": 14, "passed": 14, "critical": 0, "warnings": 2, "failed": []},
            "mart": {"suites": 1, "passed": 0, "critical": 1, "warnings": 0, "failed": ["mart.abc_shares"]},
        },
        "published": False,
    }
    return RunRecord(**(base | changes))


def test_the_summary_shows_seconds_per_stage_rows_gates_and_published():
    text = format_summary(record())
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[0] == f"2026-01-03  run {RUN}  published: NO"
    for part in ("ingest 21.4s", "gate_raw 9.8s", "dbt 30.2s", "publish 0.4s", "report -", "(total 76.9s)"):
        assert part in lines[1]
    assert lines[2] == "  rows     12,345 loaded from 2 feeds, 17 quarantined, 1 file(s) refused"
    assert lines[3] == (
        "  gates    raw 14/14 passed, 2 warn, 0 critical; recon not run;"
        " mart 0/1 passed, 0 warn, 1 critical (mart.abc_shares)"
    )
    assert "published: yes" in format_summary(record(published=True))


def test_the_table_has_one_line_per_day():
    text = format_table([record(), record(business_date=dt.date(2026, 1, 4), published=True)])
    head, first, second = text.splitlines()
    assert head.split()[:8] == ["day", "ingest", "g_raw", "g_recon", "dbt", "g_mart", "publish", "report"]
    assert first.split() == [
        "2026-01-03", "21.4", "9.8", "4.1", "30.2", "11.0", "0.4", "-", "12345", "17", "1", "14/15", "2", "1", "NO"
    ]  # fmt: skip
    assert second.startswith("2026-01-04") and second.endswith("yes")
