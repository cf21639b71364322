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

Airflow does not deliver every event: on the pinned 3.3, events that arrive while
``crm_transform`` is at its ``max_active_runs`` can stay behind until an unrelated later event
(apache/airflow#56050). With four backfill days loaded at once, two of four days were never
built. So the warehouse's ledger is read too (``ledger_days``): a day whose latest
reconciliation passed after the last ``crm_transform`` run recorded for it is ready, and
joins the days the events name (a month before the earliest of them at most); a named day
built since its latest reconciliation is dropped (a run built it from the ledger before its
event arrived: building it again after later days would reorder the SCD2 snapshots).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def triggering_extras(context: Mapping[str, Any]) -> list[Mapping[str, Any] | None]:
    """The extras of every asset event that triggered the run (an Airflow task context)."""
    events = context.get("triggering_asset_events") or {}
    return [e.extra for evs in events.values() for e in evs]


CATCH_UP_DAYS = 31  # how far before the earliest named day the ledger is searched

LEDGER_DAYS = """
with latest as (  -- each day's latest reconciliation, and the last crm_transform run of it
    select distinct on (r.business_date) r.business_date, r.success, r.finished_at,
        (select max(p.recorded_at) from audit.pipeline_runs p where p.business_date = r.business_date) as built_at
    from dq.validation_runs r
    where r.gate = 'recon' and r.business_date between %(first)s and %(last)s
    order by r.business_date, r.finished_at desc
)
select business_date, success and finished_at > coalesce(built_at, '-infinity') as ready
from latest
where finished_at > coalesce(built_at, '-infinity') or built_at is not null
order by 1
"""


def ledger_days(conn: Any, named: list[str]) -> tuple[list[str], set[str]]:
    """From ``CATCH_UP_DAYS`` before the earliest of ``named`` to the latest: the days ready to
    build (their latest reconciliation passed after the last crm_transform run recorded for
    them) and the stale ones: built since their latest reconciliation (another run built the
    day from the ledger before its event came) or failed it. Nothing without a named day."""
    import datetime as dt

    if not named:
        return [], set()
    first = dt.date.fromisoformat(named[0]) - dt.timedelta(days=CATCH_UP_DAYS)
    rows = conn.execute(LEDGER_DAYS, {"first": first, "last": dt.date.fromisoformat(named[-1])}).fetchall()
    return [d.isoformat() for d, ready in rows if ready], {d.isoformat() for d, ready in rows if not ready}


def plan_days(extras: Iterable[Mapping[str, Any] | None], conn: Any = None) -> tuple[str | None, list[str]]:
    """``build_and_queue`` over the days the events name, less the stale ones, and the days
    the ledger says are ready (``ledger_days``; ``conn``: the transformer's, opened from the
    settings if None)."""
    named = days_named(extras)
    if not named:
        return None, []
    if conn is None:
        import psycopg

        from crm.warehouse import role_url

        with psycopg.connect(role_url("crm_transformer")) as own:
            return plan_days(extras, own)
    ready, stale = ledger_days(conn, named)
    return build_and_queue([{"pending": [d for d in named if d not in stale] + ready}])


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
