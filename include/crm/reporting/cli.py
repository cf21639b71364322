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
    png: Annotated[
        bool, typer.Option("--png", help="Also draw it with headless Chromium into <report>.png (full page).")
    ] = False,
) -> None:
    """Write the daily CRM report of a day: one self-contained HTML page (var/reports/<D>.html).

    Pyramid and quadrants, tier movement, churn risk, channels, CE11, data quality; offline.
    ``--png`` needs Chromium (``make chromium``, or $CRM_CHROMIUM).
    """
    from crm.reporting import write_report

    path = write_report(date, out=out)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if png:
        from crm.reporting.browser import BrowserError, render_png

        try:
            image = render_png(path, path.with_suffix(".png"))
        except BrowserError as err:
            typer.echo(f"crm report --png: {err}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"wrote {image}")
