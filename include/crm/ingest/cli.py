"""``crm ingest``: load landing files into raw by hand (the DAG does the same per task)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crm.cli_options import Day, FirstDay, LastDay
from crm.dates import days_from_options

app = typer.Typer()


@app.command()
def ingest(
    date: Day = None,
    from_: FirstDay = None,
    to: LastDay = None,
    feed: Annotated[list[str] | None, typer.Option(help="Only these feeds (repeatable).")] = None,
    landing: Annotated[Path | None, typer.Option(help="Landing folder (default CRM_LANDING_DIR).")] = None,
    force: Annotated[bool, typer.Option(help="Reload even if the same file was loaded.")] = False,
) -> None:
    """Load channel files for a day or range into raw / quarantine, with the load audit."""
    from crm.ingest.service import ingest_day
    from crm.warehouse import ensure_ready

    days = days_from_options(date, from_, to)
    ensure_ready()
    refused_any = False
    for day in days:
        results, refused = ingest_day(day, feed, landing=landing, force=force)
        for r in results:
            typer.echo(r.summary())
        for err in refused:
            typer.echo(f"REFUSED {err}", err=True)
        refused_any |= bool(refused)
    raise typer.Exit(1 if refused_any else 0)
