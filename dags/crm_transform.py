"""
# crm_transform: build the customer warehouse and CRM marts with dbt

Scheduled on the raw feeds' **assets**: it runs when `crm_ingest` has landed a day.
Each dbt node (seed, snapshot, model with its tests) is an Airflow task rendered by
**cosmos** from the dbt manifest (`dbt parse`, no `dbt ls` at parse time), so lineage and
failures are visible per model. dbt runs as the `crm_transformer` role (Airflow
connection `crm_transformer`).

`plan_run` decides once what the run builds: the business day (the logical date's local
day; asset-triggered runs, which have none, build the last day loaded), the days flagged as
late in `audit.reprocess_requests` that the incremental models rebuild with it (and test),
and the last request it covers, which `mark_reprocessed` marks done once every node has
built (only requests every node saw).
`max_active_runs=1`: two runs never interleave on the same incremental tables.

The manifest comes from `dbt parse` (`crm.transform.ensure_manifest()`; `crm run`, the
tests and the production `airflow-init` call it). Without it the file fails to import
with an error that says so, rather than rendering an empty DAG that would "succeed".
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from airflow.sdk import Asset, dag, task
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior
from cosmos.operators.local import DbtRunOperationLocalOperator
from cosmos.profiles import PostgresUserPasswordProfileMapping

from crm.dag_defaults import default_args
from crm.feeds import load_registry
from crm.settings import get_settings
from crm.transform import manifest_path

DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"
MANIFEST = manifest_path()
# Decided once per run by plan_run (crm.transform.plan_build), so every node builds the same
# days even if another day lands meanwhile.
_PLAN = "ti.xcom_pull(task_ids='plan_run')"
RUN_DATE = "{{ " + _PLAN + "['run_date'] }}"
TEST_WINDOW_START = "{{ " + _PLAN + "['test_window_start'] }}"
LAST_REQUEST_ID = "{{ " + _PLAN + "['last_request_id'] }}"
# What every dbt task of a run reads through the macro build_setting (environment variables,
# not dbt vars: changed vars would make each task parse the whole project again).
DBT_ENV = {
    "CRM_RUN_DATE": RUN_DATE,
    "CRM_TEST_WINDOW_START": TEST_WINDOW_START,
    "CRM_REPORTING_CURRENCY": get_settings().reporting_currency,
}
if not MANIFEST.exists():
    raise FileNotFoundError(
        f"{MANIFEST} is missing: crm_transform is rendered from the dbt manifest. Run "
        "`python -c 'from crm.transform import ensure_manifest; ensure_manifest()'` "
        "(or `crm run`, which does it) and the DAG will load on the next parse."
    )
PROFILE = ProfileConfig(
    profile_name="crm",
    target_name="warehouse",
    profile_mapping=PostgresUserPasswordProfileMapping(
        conn_id="crm_transformer", profile_args={"schema": "staging"}
    ),
)

DEFAULT_ARGS = default_args(
    retries=2,
    retry_delay=dt.timedelta(minutes=1),
    max_retry_delay=dt.timedelta(minutes=20),
    execution_timeout=dt.timedelta(hours=2),
)


@dag(
    dag_id="crm_transform",
    schedule=[Asset(feed.asset_uri) for feed in load_registry().load_order()],
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["crm", "transformation", "dbt"],
)
def crm_transform() -> None:
    @task
    def plan_run(**context) -> dict:
        from crm.dates import business_day
        from crm.transform import plan_build

        return plan_build(business_day(context) if context.get("logical_date") else None)

    plan = plan_run()
    dbt = DbtTaskGroup(
        group_id="dbt",
        project_config=ProjectConfig(
            manifest_path=MANIFEST, dbt_project_path=DBT_PROJECT, project_name="crm"
        ),
        profile_config=PROFILE,
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.LOCAL, invocation_mode=InvocationMode.DBT_RUNNER
        ),
        # Tests with several parents (relationships) become their own tasks after all parents,
        # so a model's build never tests against a model not built yet.
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            test_behavior=TestBehavior.BUILD,
            should_detach_multiple_parents_tests=True,
        ),
        operator_args={
            # Unit tests check logic, not data: CI runs them (make test), daily runs do not.
            "dbt_cmd_flags": ["--exclude-resource-type", "unit_test"],
            # The run's day and test window: daily runs test the days they build (a
            # full-history test run is `crm dbt build` without --date).
            "env": DBT_ENV,
            "install_deps": False,
        },
    )
    mark_reprocessed = DbtRunOperationLocalOperator(
        task_id="mark_reprocessed",
        macro_name="mark_reprocessed_requests",
        args={"up_to_request_id": LAST_REQUEST_ID},
        env=DBT_ENV,
        project_dir=DBT_PROJECT,
        profile_config=PROFILE,
        invocation_mode=InvocationMode.DBT_RUNNER,
        install_deps=False,
    )
    plan >> dbt >> mark_reprocessed


crm_transform()
