"""Which business day an asset-triggered ``crm_transform`` run builds, and which it passes on.

Airflow gives a run every ``raw_day_passed`` event queued since the previous run was created.
While a run is active (``max_active_runs=1``) the events of the days loaded meanwhile pile up
(a backfill of ``crm_ingest``, a catch-up after an outage) and all reach the *next* run.
Building only one of those days would lose the others; building them in one dbt call would
skip each day's gate, scores, publication and the snapshots in between. So a run builds the
earliest day named and passes the rest on: its task ``pass_on`` emits one ``raw_day_passed``
event naming the next day, the later ones in ``pending``; the next run does the same. Each
day is built by a run of its own, in order, as if the days had arrived one by one.
``pass_on`` reads the run's events itself rather than ``plan_run``'s plan, so a run that fails
still hands the later days on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def triggering_extras(context: Mapping[str, Any]) -> list[Mapping[str, Any] | None]:
    """The extras of every asset event that triggered the run (an Airflow task context)."""
    events = context.get("triggering_asset_events") or {}
    return [e.extra for evs in events.values() for e in evs]


def days_named(extras: Iterable[Mapping[str, Any] | None]) -> list[str]:
    """Every business day the events' extras name (``business_day`` and ``pending``), each
    once, oldest first (ISO dates sort as dates)."""
    days: set[str] = set()
    for extra in extras:
        extra = extra or {}
        if extra.get("business_day"):
            days.add(str(extra["business_day"]))
        days.update(str(d) for d in extra.get("pending") or [])
    return sorted(days)


def build_and_queue(extras: Iterable[Mapping[str, Any] | None]) -> tuple[str | None, list[str]]:
    """The day this run builds (the earliest named; None: the events name none) and the days
    it passes on."""
    named = days_named(extras)
    return (named[0], named[1:]) if named else (None, [])


def next_event(queued: list[str]) -> dict[str, Any]:
    """The extra of the event that passes ``queued`` (oldest first, not empty) on."""
    return {"business_day": queued[0], "pending": queued[1:]}
