"""``crm dbt``: build the warehouse or serve its documentation by hand."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from crm.dates import parse_day

app = typer.Typer(help="dbt: the customer warehouse and CRM marts.", no_args_is_help=True)


@app.command()
def build(
    date: Annotated[
        dt.date | None,
        typer.Option("--date", parser=parse_day, help="Business day to build (default: last loaded)."),
    ] = None,
    full_refresh: Annotated[bool, typer.Option(help="Rebuild incremental models from scratch.")] = False,
    select: Annotated[str | None, typer.Option(help="dbt selector, e.g. 'marts.customer_segments+'.")] = None,
) -> None:
    """dbt build (seeds, snapshots, models and their tests) for a business day."""
    from crm.transform import build as run_build
    from crm.warehouse import ensure_ready

    ensure_ready()
    try:
        run_build(date, full_refresh=full_refresh, select=select)
    except RuntimeError as err:  # run_dbt: dbt said the build failed (its log is above)
        typer.echo(f"crm dbt build: {str(err).splitlines()[0]}", err=True)
        raise typer.Exit(1) from None


@app.command()
def docs(port: Annotated[int, typer.Option(help="Port of the docs site.")] = 8081) -> None:
    """Generate the dbt docs (every model and column described) and serve them on localhost."""
    from crm.transform import generate_docs, run_dbt
    from crm.warehouse import ensure_ready

    ensure_ready()
    target = generate_docs()
    run_dbt(["docs", "serve", "--port", str(port), "--no-browser", "--target-path", str(target)])


@app.command()
def lint() -> None:
    """sqlfluff (dbt templater) on every model, with the profile's environment set."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from crm.settings import REPO_ROOT
    from crm.transform import dbt_env

    env = {**os.environ, **dbt_env()}
    exe = Path(sys.executable).with_name("sqlfluff")
    raise typer.Exit(
        subprocess.run([str(exe), "lint", "dbt_project/models"], cwd=REPO_ROOT, env=env).returncode
    )
