"""
# crm_transform: build the customer warehouse and CRM marts with dbt

Scheduled on the asset `raw_day_passed`: it runs when `crm_ingest` has landed a day and the
day passed the raw gate and the reconciliation; the asset event names the business day.
dbt runs as the `crm_transformer` role (Airflow connection `crm_transformer`).

`plan_run` decides once what the run builds: the business day (the logical date's local
day; an asset-triggered run builds the day its triggering event names; when several events
queued up behind a running run, the earliest, and `pass_on` hands the others to the next run
as one event; days the ledger says passed their reconciliation and were not built since
join them, since Airflow can hold events back: `crm.transform.asset_days`), the days flagged as
late in `audit.reprocess_requests` that the incremental models rebuild with it (and test),
and the last request it covers, which `mark_reprocessed` marks done once the build passed.

`dbt_build` is the dbt stage, one dbt process (`crm.transform.daily_stage`):
`dbt source freshness`, then one `dbt build` of the whole project for the planned day:
seeds, snapshots, models and every data test, **source tests included** (unit tests are
CI's). It costs what `crm dbt build --date D` costs: dbt starts once, not once per node
(one Airflow task per node spent ~2 s per node starting dbt: 142 s against 24 s).
When it fails, the task's error names every failed node (model, test, stale source) with
dbt's message, the file that defines it and its compiled SQL, and says where this run's
dbt log and run_results.json are (`$CRM_HOME/logs/dbt/crm_transform/<run>/try_<n>/`).
Failed tests and stale sources are not retried (the same data fails again); other errors
(a lost connection) are. Stale sources do not stop the build: the marts are built from what
landed, and the run fails with the sources named.

`score_churn` scores the day with the champion churn model (`crm.ml.scoring`; no champion:
nothing scored), writes each scored customer's lifetime value (`crm.ml.clv`: margin x
survival, discounted) and rebuilds the marts that read scores (`source:ml+`), so they carry
the day's scores. `gate_mart` then judges the built marts (Great Expectations: one segment per customer, ABC
shares, TRB, segment shares day on day, churn probabilities, customer_360 coverage); a critical
failure fails the run, so nothing after it runs for that day. `publish` then makes the day
visible to BI (write-audit-publish: a row-level security policy on every day-grained mart
shows `crm_bi_reader` only the days in `dq.published_days`; a failed day stays invisible while
the owner can still inspect it). `write_report` then writes the
day's report (`crm report`: one offline HTML page, `$CRM_HOME/reports/<day>.html`: pyramid,
LV quadrants, tier movement, churn risk, channels, CE11, and the day's data quality).
`retain` (after `publish`, as `crm_loader`: Airflow connection `crm_loader`) applies retention
for the business day (`crm.privacy.retention`: raw partitions and quarantined rows through the
owner's `audit.apply_retention`, which takes the cutoffs from the owner's policy; landing day
folders and log files); its counts reach the run record (`audit.pipeline_runs.retention`).

`max_active_runs=1`: two runs never interleave on the same incremental tables.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, Param, dag, task

from crm.alerts import publish_deadline_alerts
from crm.dag_defaults import default_args
from crm.quality.tasks import RAW_DAY_PASSED
from crm.settings import get_settings

# Decided once per run by plan_run (crm.transform.plan_build): the build and
# mark_reprocessed see the same days even if another day lands meanwhile.
_PLAN = "ti.xcom_pull(task_ids='plan_run')"
RUN_DATE = "{{ " + _PLAN + "['run_date'] }}"
TEST_WINDOW_START = "{{ " + _PLAN + "['test_window_start'] }}"
LAST_REQUEST_ID = "{{ " + _PLAN + "['last_request_id'] }}"
# What dbt reads through the macro build_setting (environment variables, not dbt vars:
# changed vars would make dbt parse the whole project again every day). Rendered into the
# tasks' arguments, so the Airflow UI shows what each run built.
DBT_ENV = {
    "CRM_RUN_DATE": RUN_DATE,
    "CRM_TEST_WINDOW_START": TEST_WINDOW_START,
}
CONN_ID = "crm_transformer"
LOADER_CONN_ID = "crm_loader"  # retention: it loads raw, and may apply retention to it

DEFAULT_ARGS = default_args(
    retries=2,
    retry_delay=dt.timedelta(minutes=1),
    max_retry_delay=dt.timedelta(minutes=20),
    execution_timeout=dt.timedelta(hours=2),
)


@dag(
    dag_id="crm_transform",
    schedule=[Asset(RAW_DAY_PASSED)],
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    # One run at a time: the incremental marts build each day on top of the previous one, so
    # days must be built in order; two runs would interleave on the same incremental tables.
    max_active_runs=1,
    # Marts published by 07:00 local on the day after the business day (CRM_PUBLISH_DEADLINE)
    # and within 3 h of the run being queued (CRM_PUBLISH_WITHIN); a miss goes to the alert channels.
    deadline=publish_deadline_alerts(),
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["crm", "transformation", "dbt"],
    # The "Trigger DAG" form of the UI (and the REST API's conf): a day to rebuild by hand.
    params={
        "business_day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Business day to build (YYYY-MM-DD). Empty: the day the asset event names.",
        ),
        "full_refresh": Param(
            False, type="boolean", description="Rebuild every incremental mart from all history."
        ),
    },
)
def crm_transform() -> None:
    @task
    def plan_run(**context) -> dict:
        import datetime as dt

        from crm.dates import business_day
        from crm.transform import plan_build
        from crm.transform.asset_days import plan_days, triggering_extras

        if context["params"].get("business_day"):  # asked for in the trigger form
            return plan_build(dt.date.fromisoformat(context["params"]["business_day"]))
        day, queued = plan_days(triggering_extras(context))
        if day:  # the earliest day named; pass_on hands the others to the next run
            return {**plan_build(dt.date.fromisoformat(day)), "queued_days": queued}
        return plan_build(business_day(context) if context.get("logical_date") else None)

    @task(outlets=[Asset(RAW_DAY_PASSED)])
    def pass_on(**context) -> list[str]:
        """The days queued behind this run's, as one raw_day_passed event for the next run.
        Read from the run's own events, not from plan_run: a run that fails (its plan, its
        build, its gate) still hands the later days on; the next run starts when this one ends."""
        from airflow.sdk.exceptions import AirflowSkipException

        from crm.transform.asset_days import next_event, plan_days, triggering_extras

        queued = [] if context["params"].get("business_day") else plan_days(triggering_extras(context))[1]
        if not queued:
            raise AirflowSkipException("no other day queued behind this one")
        context["outlet_events"][Asset(RAW_DAY_PASSED)].extra = next_event(queued)
        return queued

    @task
    def dbt_build(env: dict, **context) -> dict:
        import re

        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowFailException

        from crm.transform import DbtStageError, daily_stage

        settings = get_settings()
        ti = context["ti"]
        run = re.sub(r"[^\w.-]+", "_", context["run_id"])
        log_dir = settings.home / "logs" / "dbt" / "crm_transform" / run / f"try_{ti.try_number}"
        plan = {"run_date": env["CRM_RUN_DATE"], "test_window_start": env["CRM_TEST_WINDOW_START"]}
        try:
            return daily_stage(
                plan,
                log_dir=log_dir,
                connection_url=Connection.get(CONN_ID).get_uri(),
                full_refresh=bool(context["params"].get("full_refresh")),
            )
        except DbtStageError as err:
            if err.data_failure:
                raise AirflowFailException(str(err)) from None
            raise

    @task
    def mark_reprocessed(up_to_request_id: str, env: dict) -> None:
        import json

        from airflow.sdk import Connection

        from crm.transform import run_dbt

        args = json.dumps({"up_to_request_id": int(up_to_request_id)})
        run_dbt(
            ["run-operation", "mark_reprocessed_requests", "--args", args],
            connection_url=Connection.get(CONN_ID).get_uri(),
            extra_env=env,
        )

    @task
    def gate_mart(env: dict, **context) -> dict:
        import datetime as dt

        from crm.quality.tasks import gate_task

        return gate_task("mart", dt.date.fromisoformat(env["CRM_RUN_DATE"]), context["run_id"])

    @task
    def write_report(env: dict) -> str:
        import datetime as dt

        from crm.reporting import write_report as write

        return str(write(dt.date.fromisoformat(env["CRM_RUN_DATE"])))

    @task
    def publish(env: dict, **context) -> str:
        import datetime as dt

        from crm.quality.publish import publish as publish_day

        publish_day(dt.date.fromisoformat(env["CRM_RUN_DATE"]), context["run_id"])
        return env["CRM_RUN_DATE"]

    @task
    def score_churn(env: dict) -> dict:
        import datetime as dt

        from airflow.sdk import Connection

        from crm.ml.clv import score_clv
        from crm.ml.scoring import score_churn as score
        from crm.project_vars import dbt_vars
        from crm.transform import run_dbt

        day = dt.date.fromisoformat(env["CRM_RUN_DATE"])
        result = score(day, reasons_min_probability=dbt_vars()["churn_reasons_min_probability"])
        if result.scored and result.rows:  # the marts that read scores take today's
            score_clv(day, result.model_version)
            run_dbt(
                ["build", "--select", "source:ml+", "--exclude-resource-type", "unit_test"],
                connection_url=Connection.get(CONN_ID).get_uri(),
                extra_env=env,
            )
        return {"model_version": result.model_version, "rows": result.rows, "message": result.message}

    plan = plan_run()
    pass_on()
    built = plan >> dbt_build(DBT_ENV) >> score_churn(DBT_ENV)
    passed = built >> gate_mart(DBT_ENV)
    passed >> mark_reprocessed(LAST_REQUEST_ID, DBT_ENV)

    @task
    def retain(env: dict, **context) -> dict:
        """Retention for the business day, counted per layer (audit.retention_runs, the run record)."""
        import datetime as dt

        from airflow.sdk import Connection

        from crm.privacy.retention import apply_retention

        result = apply_retention(
            dt.date.fromisoformat(env["CRM_RUN_DATE"]),
            run_id=context["run_id"],
            conninfo=Connection.get(LOADER_CONN_ID).get_uri(),
            history_conninfo=Connection.get(CONN_ID).get_uri(),
        )
        return {layer: r.as_json() for layer, r in result.layers.items()}

    passed >> publish(DBT_ENV) >> [write_report(DBT_ENV), retain(DBT_ENV)]

    @task
    def record_run(**context) -> dict:
        """The run record (audit.pipeline_runs): rows, gates, seconds, published; failed days too."""
        import datetime as dt

        from crm.dates import business_day
        from crm.pipeline_run import record_run as record

        plan = context["ti"].xcom_pull(task_ids="plan_run") or {}
        day = dt.date.fromisoformat(plan["run_date"]) if plan.get("run_date") else business_day(context)
        # Seconds from the warehouse's timestamps and dbt's artefacts: the Task SDK gives a
        # task no other task instance's start and end (crm run re-records with Airflow's own).
        rec = record(day, context["run_id"])
        return {"business_day": day.isoformat(), "published": rec.published, "seconds": rec.stage_seconds}

    # Last, after every other task, whatever their state. A teardown without setups: its
    # trigger rule (all_done_setup_success) is all_done, and unlike a plain all_done leaf it
    # leaves the run's verdict to the work tasks (a failed day still fails the run).
    recorder = record_run().as_teardown()
    leaves = [t for t in recorder.operator.dag.tasks if not t.downstream_list]
    leaves.remove(recorder.operator)
    leaves >> recorder


crm_transform()
