"""Business days: the bank's local day (Asia/Shanghai) a run covers."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

BANK_TZ = ZoneInfo("Asia/Shanghai")

# The same rule as a Jinja template, for operator arguments.
BUSINESS_DAY_TEMPLATE = "{{ logical_date.in_timezone('Asia/Shanghai').strftime('%Y-%m-%d') }}"


def business_day(context: dict[str, Any]) -> dt.date:
    """The business day of an Airflow run: the local date of its logical date.

    Scheduled runs use a data-interval timetable whose logical date is the start of
    the local day; ``airflow dags test DAG 2026-01-01`` gives 2026-01-01 as well.
    """
    return context["logical_date"].astimezone(BANK_TZ).date()
