"""Events that queued up behind a running crm_transform run: every day is built, in order.

Airflow hands the next run every raw_day_passed event queued meanwhile (a backfill of
crm_ingest, a catch-up); the run builds the earliest and its task pass_on hands the rest to
the run after it (crm.transform.asset_days). Simulated here run by run, as the scheduler
would: whatever the events that pile up, each day is built once, oldest first.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from crm.quality.tasks import RAW_DAY_PASSED
from crm.transform.asset_days import build_and_queue, days_named, next_event

DAGS = Path(__file__).resolve().parents[2] / "dags"


def _runs(arrivals: list[list[dict]]) -> list[str]:
    """The day each run builds when ``arrivals[i]`` are the ingest events that land while run i
    is active (the first run gets arrivals[0]); pass_on's event joins the next run's queue."""
    built, queue = [], list(arrivals[0])
    for i in range(1, len(arrivals) + 20):
        if not queue:
            break
        day, queued = build_and_queue(queue)  # plan_run
        built.append(day)
        passed_on = [next_event(queued)] if queued else []  # pass_on (skipped when nothing queued)
        queue = passed_on + (arrivals[i] if i < len(arrivals) else [])
    return built


def test_days_that_pile_up_are_each_built_once_in_order():
    day = lambda d: {"business_day": f"2026-01-{d:02d}"}  # noqa: E731
    # a backfill: day 1 alone, then 2 and 3 land while day 1 builds, then 4, 5, 6 at once
    arrivals = [[day(1)], [day(2), day(3)], [day(4), day(5), day(6)], [], []]
    assert _runs(arrivals) == [f"2026-01-{d:02d}" for d in range(1, 7)]
    # the same day twice (ingest re-run) and an event without a day: built once, nothing lost
    assert _runs([[day(2), day(1), day(2), {}], []]) == ["2026-01-01", "2026-01-02"]


def test_the_event_passed_on_names_the_next_day_and_keeps_the_rest():
    assert next_event(["2026-01-02", "2026-01-03"]) == {
        "business_day": "2026-01-02",
        "pending": ["2026-01-03"],
    }
    assert days_named([{"business_day": "2026-01-05", "pending": ["2026-01-07", "2026-01-06"]}]) == [
        "2026-01-05",
        "2026-01-06",
        "2026-01-07",
    ]


def test_crm_transform_passes_the_queue_on_through_its_own_asset():
    from airflow.models import DagBag

    options = (
        {"include_examples": False} if "include_examples" in inspect.signature(DagBag).parameters else {}
    )
    dag = DagBag(dag_folder=DAGS / "crm_transform.py", **options).dags["crm_transform"]
    task = dag.get_task("pass_on")
    assert task.upstream_task_ids == set(), "a failed plan_run must not lose the days queued behind it"
    assert [o.uri for o in task.outlets] == [RAW_DAY_PASSED]


def test_a_run_reads_the_days_of_every_event_that_triggered_it():
    from types import SimpleNamespace

    from crm.transform.asset_days import triggering_extras

    context = {
        "triggering_asset_events": {
            RAW_DAY_PASSED: [
                SimpleNamespace(extra={"business_day": "2026-01-03"}),
                SimpleNamespace(extra={"business_day": "2026-01-02", "pending": ["2026-01-04"]}),
                SimpleNamespace(extra=None),
            ]
        }
    }
    assert build_and_queue(triggering_extras(context)) == ("2026-01-02", ["2026-01-03", "2026-01-04"])
    assert triggering_extras({}) == []
