"""crm_transform's catch-up from the ledger: a day whose latest reconciliation passed after the
last crm_transform run recorded for it is built even if Airflow never delivered its event
(apache/airflow#56050 on the pinned 3.3: two of four backfill days were never built)."""

from __future__ import annotations

import datetime as dt

from crm.transform.asset_days import ledger_days, plan_days

D = [dt.date(2026, 3, 1) + dt.timedelta(days=i) for i in range(6)]


def _recon(db, day: dt.date, success: bool, at: str) -> None:
    db.execute(
        "insert into dq.validation_runs (gate, subject, business_date, suite, success, critical_failures,"
        " warnings, started_at, finished_at) values ('recon', 'breaks', %s, 'recon.breaks', %s, %s, 0, %s, %s)",
        (day, success, 0 if success else 1, at, at),
    )


def _built(db, day: dt.date, at: str) -> None:
    db.execute(
        "insert into audit.pipeline_runs (run_id, business_date, recorded_at) values (%s, %s, %s)",
        (f"run-{day}-{at}", day, at),
    )


def test_the_ledger_adds_days_that_passed_and_were_not_built_since(db):
    _recon(db, D[0] - dt.timedelta(days=40), True, "2026-03-01 01:00+00")  # beyond the catch-up window
    _recon(db, D[1], True, "2026-03-10 01:00+00")  # passed, never built: ready
    _recon(db, D[2], True, "2026-03-10 01:00+00")
    _recon(db, D[2], False, "2026-03-10 02:00+00")  # its latest reconciliation failed: not ready
    _recon(db, D[3], True, "2026-03-10 01:00+00")
    _built(db, D[3], "2026-03-10 03:00+00")  # built after it passed: not ready
    _built(db, D[4], "2026-03-10 00:30+00")
    _recon(db, D[4], True, "2026-03-10 01:00+00")  # delivered again after its build: ready
    db.commit()
    named = [D[5].isoformat()]
    ready, stale = ledger_days(db, named)
    assert ready == [D[1].isoformat(), D[4].isoformat()]
    assert stale == {D[2].isoformat(), D[3].isoformat()}
    assert plan_days([{"business_day": D[5].isoformat()}], db) == (
        D[1].isoformat(),
        [D[4].isoformat(), D[5].isoformat()],
    ), "the earliest ready day first, the event's day queued behind it"
    assert plan_days([None, {}], db) == (None, []), "no day named: nothing from the ledger either"
    # an event for a day a run already built from the ledger: not built again after later days
    late = [{"business_day": D[3].isoformat()}, {"business_day": D[5].isoformat()}]
    assert plan_days(late, db) == (D[1].isoformat(), [D[4].isoformat(), D[5].isoformat()])
