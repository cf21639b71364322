"""Defaults shared by every DAG: owner, retries with exponential backoff, timeouts, alerts.

``on_failure_callback`` is the list of configured notifiers (``crm.alerts``): Airflow calls
each one with the failed task's context, so every channel gets one message per failure.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from crm.alerts import notifiers

OWNER = "crm-data-engineering"


def default_args(
    retries: int = 3,
    retry_delay: dt.timedelta = dt.timedelta(minutes=2),
    max_retry_delay: dt.timedelta = dt.timedelta(minutes=30),
    execution_timeout: dt.timedelta = dt.timedelta(hours=1),
) -> dict[str, Any]:
    return {
        "owner": OWNER,
        "retries": retries,
        "retry_delay": retry_delay,
        "retry_exponential_backoff": True,
        "max_retry_delay": max_retry_delay,
        "execution_timeout": execution_timeout,
        "on_failure_callback": notifiers(),
    }
