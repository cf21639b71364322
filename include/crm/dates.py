"""Business days: the bank's local day a run covers.

The bank's time zone is set once, as the dbt var ``bank_timezone`` in
``dbt_project/dbt_project.yml``; Python reads it from there (no second copy to drift).
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project" / "dbt_project.yml"


@lru_cache(maxsize=1)
def bank_timezone() -> str:
    """The dbt var ``bank_timezone`` (an IANA name), read without importing dbt or yaml."""
    for line in DBT_PROJECT.read_text(encoding="utf-8").splitlines():
        key, _, value = line.strip().partition(":")
        if key == "bank_timezone":
            return value.split("#")[0].strip().strip("'\"")
    raise LookupError(f"{DBT_PROJECT} sets no var bank_timezone")


BANK_TZ = ZoneInfo(bank_timezone())

# The same rule as a Jinja template, for operator arguments.
BUSINESS_DAY_TEMPLATE = "{{ logical_date.in_timezone('" + BANK_TZ.key + "').strftime('%Y-%m-%d') }}"


def business_day(context: dict[str, Any]) -> dt.date:
    """The business day of an Airflow run: the local date of its logical date.

    Scheduled runs use a data-interval timetable whose logical date is the start of
    the local day; ``airflow dags test DAG 2026-01-01`` gives 2026-01-01 as well.
    """
    return context["logical_date"].astimezone(BANK_TZ).date()


# --- days given on the command line --------------------------------------------------------
# Every `crm` command that takes days parses them here. Errors are typer.BadParameter: a
# usage error (exit 2, one line, no traceback). typer is imported on use: DAGs import this
# module for business_day.


def parse_day(value: str | dt.date) -> dt.date:
    """A YYYY-MM-DD option value (``typer.Option(parser=parse_day)``)."""
    if isinstance(value, dt.date):  # a default given as a date
        return value
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        import typer

        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


def days_from_options(date: dt.date | None, first: dt.date | None, last: dt.date | None) -> list[dt.date]:
    """The days of ``--date D`` or of ``--from A --to B`` (both inclusive), in order."""
    import typer

    if date is not None and (first is not None or last is not None):
        raise typer.BadParameter("give either --date or --from/--to, not both", param_hint="'--date'")
    if date is not None:
        return [date]
    if first is None and last is None:
        raise typer.BadParameter("give --date D or --from A --to B")
    if first is None or last is None:
        missing = "'--to'" if last is None else "'--from'"
        raise typer.BadParameter("missing (--from and --to go together)", param_hint=missing)
    if last < first:
        raise typer.BadParameter(f"{last} is before --from {first}", param_hint="'--to'")
    return [first + dt.timedelta(days=d) for d in range((last - first).days + 1)]
