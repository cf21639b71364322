"""
# crm_ingest: land each channel's daily files in `raw`

One task group per feed of the **feed registry** (`include/crm/feeds/registry.yml`):

1. `wait_for_file` - reschedule-mode sensor for `<landing>/<feed>/<day>/<file>` (no worker slot held);
2. `load` - stream the file through `COPY` into the day's partition of `raw.<feed>`, quarantine bad
   rows with a reason code, record the load in `audit.load_log` (rows in = loaded + quarantined).

A feed runs after the feeds it references (`depends_on`). A missing or refused file fails only
that feed (and the feeds that need it); the others load. Re-running a day replaces that day's
partition: one copy.

Then the day as a whole is judged (Great Expectations, `expectations/`): `gate_raw` (volume,
completeness, distribution, freshness, a repeated delivery: each feed against its own history)
and `gate_recon` (row counts and amounts against the source's control records, balances that
roll forward). A critical failure fails the run and the day goes no further; warnings are
recorded in `dq` and the Data Docs. When both pass, `gate_recon` updates the asset
`raw_day_passed` with the business day in the event's extra: `crm_transform` is scheduled on
it and builds exactly that day. Each raw table stays an asset of its load task (lineage).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, CronDataIntervalTimetable, TaskGroup, dag, task

from crm.dag_defaults import default_args
from crm.dates import BANK_TZ
from crm.feeds import load_registry
from crm.quality.tasks import RAW_DAY_PASSED

REGISTRY = load_registry()

DEFAULT_ARGS = default_args()


def feed_group(feed_name: str) -> TaskGroup:
    feed = REGISTRY.feed(feed_name)
    with TaskGroup(group_id=feed_name, tooltip=feed.description) as group:

        @task.sensor(
            task_id="wait_for_file",
            mode="reschedule",
            poke_interval=300,
            timeout=feed.sensor_timeout_minutes * 60,
            retries=0,
        )
        def wait_for_file(feed_name: str = feed_name, **context) -> bool:
            from crm.dates import business_day
            from crm.ingest.sensors import file_arrived

            return file_arrived(feed_name, business_day(context), context)

        @task(task_id="load", outlets=[Asset(feed.asset_uri)])
        def load(feed_name: str = feed_name, **context) -> dict:
            from crm.dates import business_day
            from crm.ingest.service import load_feed_day

            result = load_feed_day(feed_name, business_day(context), run_id=context["run_id"])
            return {
                "status": result.status,
                "rows_in_file": result.rows_in_file,
                "rows_loaded": result.rows_loaded,
                "rows_quarantined": result.rows_quarantined,
                "reasons": result.reasons,
                "warnings": result.warnings,
            }

        wait_for_file() >> load()
    return group


@dag(
    dag_id="crm_ingest",
    # One run per local business day of the bank (dbt var bank_timezone): the logical date is
    # 00:00 local of the day, so `airflow backfill create --from-date A --to-date B` makes one
    # run per past day (Airflow 3's backfill works whatever catchup says). catchup stays off:
    # on, the scheduler would create every day since start_date on a fresh deployment.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone=BANK_TZ.key),
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["crm", "ingestion"],
)
def crm_ingest() -> None:
    groups = {feed.name: feed_group(feed.name) for feed in REGISTRY.load_order()}
    for feed in REGISTRY.load_order():
        for dep in feed.depends_on:
            groups[dep] >> groups[feed.name]

    @task
    def gate_raw(**context) -> dict:
        from crm.dates import business_day
        from crm.quality.tasks import gate_task

        return gate_task("raw", business_day(context), context["run_id"])

    @task(outlets=[Asset(RAW_DAY_PASSED)])
    def gate_recon(**context) -> dict:
        from crm.dates import business_day
        from crm.quality.tasks import gate_task

        day = business_day(context)
        outcome = gate_task("recon", day, context["run_id"])
        # crm_transform builds exactly this day (the asset event carries it).
        context["outlet_events"][Asset(RAW_DAY_PASSED)].extra = {"business_day": day.isoformat()}
        return outcome

    list(groups.values()) >> gate_raw() >> gate_recon()


crm_ingest()
