"""
# crm_ingest: land each channel's daily files in `raw`

One task group per feed of the **feed registry** (`include/crm/feeds/registry.yml`):

1. `wait_for_file` - reschedule-mode sensor for `<landing>/<feed>/<day>/<file>` (no worker slot held);
2. `load` - stream the file through `COPY` into the day's partition of `raw.<feed>`, quarantine bad
   rows with a reason code, record the load in `audit.load_log` (rows in = loaded + quarantined).

A feed runs after the feeds it references (`depends_on`). A missing or refused file fails only
that feed (and the feeds that need it); the others load. Each raw table is an Airflow **asset**:
`crm_transform` is scheduled on them. Re-running a day replaces that day's partition: one copy.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, CronDataIntervalTimetable, TaskGroup, dag, task

from crm.dag_defaults import default_args
from crm.feeds import load_registry

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
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="Asia/Shanghai"),
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


crm_ingest()
