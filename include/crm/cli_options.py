"""Command-line options more than one ``crm`` command takes (typer ``Annotated`` types).

One day or an inclusive range, parsed by crm.dates.parse_day; crm.dates.days_from_options
turns the three into the days to run.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from crm.dates import parse_day

Day = Annotated[dt.date | None, typer.Option("--date", parser=parse_day, help="Business day (YYYY-MM-DD).")]
FirstDay = Annotated[dt.date | None, typer.Option("--from", parser=parse_day, help="First day of a range.")]
LastDay = Annotated[
    dt.date | None, typer.Option("--to", parser=parse_day, help="Last day of a range (inclusive).")
]
