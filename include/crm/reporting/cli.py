"""``crm report``: the CRM head's daily page.

Cheap to import (``crm`` lists it on every start): typer and the standard library only;
pandas, plotly and psycopg are imported when the command runs.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from crm.dates import parse_day

app = typer.Typer(add_completion=False)


@app.command("report")
def report_cmd(
    date: Annotated[dt.date, typer.Option("--date", parser=parse_day, help="Business day (YYYY-MM-DD).")],
    out: Annotated[
        Path | None, typer.Option(help="Write here instead of $CRM_HOME/reports/<D>.html.")
    ] = None,
) -> None:
    """Write the daily CRM report of a day: one self-contained HTML page (var/reports/<D>.html).

    Pyramid and quadrants, tier movement, churn risk, channels, CE11, data quality; offline.
    """
    from crm.reporting import write_report

    path = write_report(date, out=out)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
