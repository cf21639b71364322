"""crm_transform under real Airflow (`airflow dags test`) and real dbt on the test PostgreSQL:
the dbt stage (one dbt process: source freshness, then one dbt build) builds the day, runs
the source tests, and names the failing node when a test fails."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from crm.settings import get_settings

from .bank import DAYS, START, load_days
from .test_dbt_build import redeliver_late

FAILING_TEST = "source_not_null_raw_core_customers_customer_id"


def stage_dirs() -> list[Path]:
    """The dbt stage's folders (dbt.log, run_results.json, sources.json), one per try."""
    root = get_settings().home / "logs" / "dbt" / "crm_transform"
    return sorted(root.glob("*/try_*"), key=lambda p: p.stat().st_mtime)


def rendered_fields() -> dict[str, str]:
    """Rendered template fields of the last DAG run's tasks (JSON text), by task id."""
    import sqlite3

    with sqlite3.connect(get_settings().home / "airflow" / "airflow.db") as airflow_db:
        rows = airflow_db.execute("select task_id, rendered_fields from rendered_task_instance_fields")
        return {task: fields or "" for task, fields in rows.fetchall()}


def test_crm_transform_dag_builds_the_new_day_and_the_late_one_under_airflow(built, db):
    """One dbt build under Airflow: a late partition is rebuilt by every model before its
    request is marked processed; source freshness and source tests ran."""
    from crm.orchestrate import run_dag

    last = START + dt.timedelta(days=DAYS - 1)
    late_day = START + dt.timedelta(days=2)
    load_days(built, range(DAYS - 1, DAYS))
    redeliver_late(built, db, "core_transactions", late_day)
    before = db.execute(
        "select count(*) from marts.fct_transactions where business_date = %s", (late_day,)
    ).fetchone()[0]
    db.execute("delete from marts.fct_transactions where business_date = %s", (late_day,))
    already = set(stage_dirs())

    outcome = run_dag("crm_transform", last)

    assert outcome.ok, outcome.failure_excerpt()
    after = db.execute(
        "select count(*) from marts.fct_transactions where business_date = %s", (late_day,)
    ).fetchone()[0]
    assert after == before > 0, "fct_transactions rebuilt the late day"
    pending = db.execute(
        "select count(*) from audit.reprocess_requests where processed_at is null"
    ).fetchone()[0]
    assert pending == 0, "the late day's request is marked processed"
    for mart in ("rm_worklist", "customer_360"):
        query = f"select count(*) from marts.{mart} where snapshot_date = %s"
        assert db.execute(query, (last,)).fetchone()[0] > 0, f"marts.{mart} has the new day"

    (stage,) = set(stage_dirs()) - already  # one try: it passed the first time
    assert (stage / "dbt.log").stat().st_size > 0
    results = json.loads((stage / "run_results.json").read_text())["results"]
    manifest = json.loads((get_settings().dbt_target / "manifest.json").read_text())["nodes"]
    source_tests = [
        r
        for r in results
        if r["unique_id"].startswith("test.")
        and any(p.startswith("source.") for p in manifest[r["unique_id"]]["depends_on"]["nodes"])
    ]
    assert len(source_tests) > 10 and all(r["status"] == "pass" for r in source_tests), "source tests ran"
    kinds = {r["unique_id"].split(".")[0] for r in results}
    assert {"model", "test", "seed", "snapshot"} <= kinds
    assert not any(r["unique_id"].startswith("unit_test.") for r in results), "unit tests are CI's"
    freshness = json.loads((stage / "sources.json").read_text())["results"]
    assert freshness and all(r["status"] == "pass" for r in freshness), "source freshness ran"

    fields = rendered_fields()
    build_env = json.loads(fields["dbt_build"])["op_args"][0]
    assert build_env["CRM_RUN_DATE"] == last.isoformat(), "the build is of the day plan_run decided"
    assert build_env["CRM_TEST_WINDOW_START"] == late_day.isoformat(), "tests cover the late day too"
    salt = get_settings().role_password("crm_pii_salt")
    assert not [task for task, rendered in fields.items() if salt in rendered], "PII salt in Airflow"


def test_a_failing_dbt_test_fails_the_dag_and_names_the_node_and_its_log(built, db):
    """A null key in the day's raw customers: the source test fails, the task fails at once
    (no retry: the same data fails again) with the test's name and the log's path."""
    from crm.orchestrate import run_dag

    day = START + dt.timedelta(days=DAYS - 2)
    db.execute(
        "update raw.core_customers set customer_id = null"
        " where ctid = (select ctid from raw.core_customers where _business_date = %s limit 1)",
        (day,),
    )
    already = set(stage_dirs())

    outcome = run_dag("crm_transform", day)

    assert not outcome.ok
    text = outcome.log.read_text(errors="replace")
    assert FAILING_TEST in text, outcome.failure_excerpt()
    (stage,) = set(stage_dirs()) - already  # failed tests are not retried
    assert f"dbt log: {stage / 'dbt.log'}" in text, outcome.failure_excerpt()
    failed = [
        r["unique_id"]
        for r in json.loads((stage / "run_results.json").read_text())["results"]
        if r["status"] in ("fail", "error")
    ]
    assert [f for f in failed if FAILING_TEST in f], failed


def test_the_trigger_form_asks_for_a_day_and_a_full_refresh_which_the_dbt_stage_honours(built, db, tmp_path):
    """crm_transform's params (the UI's trigger form): business_day and full_refresh; a full
    refresh rebuilds every incremental mart from all history, not only the day."""
    import ast

    from crm.transform import daily_stage, plan_build

    source = (Path(__file__).resolve().parents[2] / "dags" / "crm_transform.py").read_text()
    dag_call = next(
        n
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "dag"
    )
    params = next(k.value for k in dag_call.keywords if k.arg == "params")
    assert [ast.literal_eval(key) for key in params.keys] == ["business_day", "full_refresh"]

    day = START + dt.timedelta(days=DAYS - 2)
    first = db.execute("select min(snapshot_date) from marts.customer_segments").fetchone()[0]
    db.execute("delete from marts.customer_segments where snapshot_date = %s", (first,))
    daily_stage(plan_build(day), log_dir=tmp_path, full_refresh=True)
    args = json.loads((tmp_path / "run_results.json").read_text())["args"]
    assert args["full_refresh"] is True
    rebuilt = db.execute("select count(*) from marts.customer_segments where snapshot_date = %s", (first,))
    assert rebuilt.fetchone()[0] > 0, "the full refresh rebuilt the earlier day a daily run would not touch"
