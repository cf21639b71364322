"""The gates as Airflow task bodies: run, log the summary, fail the task on a critical
failure (a message naming gate, feed, check and observed value), else return the counts.

One task per gate and day, not one per feed: GX costs ~8 s to import in each task process
(measured on this 2-core machine), more than the raw gate of every feed of a 2,000-customer
day (~2 s); the results stay per feed in dq and in the Data Docs.
"""

from __future__ import annotations

import datetime as dt
import logging

log = logging.getLogger(__name__)

# The asset crm_ingest updates once a day has loaded and passed the raw gate and the
# reconciliation; its event's extra names the business day. crm_transform is scheduled on
# it and builds exactly that day.
RAW_DAY_PASSED = "postgres://crm-warehouse:5432/crm/dq/raw_day_passed"


def gate_task(gate: str, day: dt.date, run_id: str | None) -> dict:
    from airflow.sdk.exceptions import AirflowFailException

    from crm.quality.gate import GateFailed, run_gate

    outcome = run_gate(gate, day, pipeline_run_id=run_id)
    log.info("%s", outcome.summary())
    try:
        outcome.raise_if_failed()
    except GateFailed as err:
        raise AirflowFailException(str(err)) from None  # the same data fails again: no retry
    return {
        "gate": gate,
        "business_day": day.isoformat(),
        "suites": len(outcome.runs),
        "warnings": sum(len(r.warned) for r in outcome.runs),
        "data_docs": outcome.docs,
    }
