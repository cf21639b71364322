"""``crm dq``: run a quality gate by hand, open its Data Docs, rewrite the suites.

Cheap to import (``crm`` lists it on every start): GX is imported when a command runs.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from crm.dates import parse_day

app = typer.Typer(help="Data-quality gates (Great Expectations): run, docs, suites.", no_args_is_help=True)


@app.callback()
def _dq() -> None:
    """Data-quality gates (Great Expectations): run, docs, suites."""


@app.command("run")
def run_cmd(
    date: Annotated[dt.date, typer.Option("--date", parser=parse_day, help="Business day (YYYY-MM-DD).")],
    gate: Annotated[
        list[str] | None, typer.Option(help="raw, recon or mart (repeatable; default all).")
    ] = None,
    feed: Annotated[list[str] | None, typer.Option(help="Only these feeds / marts (repeatable).")] = None,
) -> None:
    """Validate a day: results in dq, failed expectations first; exit 1 on a critical failure."""
    from crm.quality.gate import run_gate
    from crm.quality.suites import GATES

    unknown = [g for g in gate or () if g not in GATES]
    if unknown:
        raise typer.BadParameter(
            f"unknown gate {', '.join(unknown)}; gates: {', '.join(GATES)}", param_hint="'--gate'"
        )
    failed = False
    for name in gate or ["raw", "mart"]:
        outcome = run_gate(name, date, subjects=feed)
        typer.echo(outcome.summary())
        failed |= not outcome.success
    raise typer.Exit(1 if failed else 0)


@app.command("docs")
def docs_cmd() -> None:
    """Print the path of the Data Docs (open it in a browser; it works offline)."""
    from crm.settings import get_settings

    index = get_settings().home / "gx" / "data_docs" / "index.html"
    if not index.exists():
        typer.echo(f"no Data Docs yet at {index}: run a gate first (crm dq run --date D)", err=True)
        raise typer.Exit(1)
    typer.echo(index.as_uri())


@app.command("suites")
def suites_cmd() -> None:
    """Rewrite expectations/gx from the feed registry and dbt_project.yml (needs a warehouse
    with the marts built: GX checks each table exists). Review and commit the diff."""
    import os

    from crm.quality.project import write_project
    from crm.quality.suites import URL_VARIABLE
    from crm.settings import get_settings
    from crm.warehouse import role_url

    settings = get_settings()
    os.environ[URL_VARIABLE] = role_url("crm_transformer", settings)
    write_project(settings.expectations_dir)
    typer.echo(f"wrote {settings.expectations_dir / 'gx'}")
