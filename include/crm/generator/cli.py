"""``crm generate``: write the sample bank's feeds."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from crm.dates import parse_day

app = typer.Typer()


@app.command()
def generate(
    customers: Annotated[int, typer.Option(help="Customers at the start.")] = 2000,
    start: Annotated[
        dt.date, typer.Option(parser=parse_day, help="First business day (YYYY-MM-DD).")
    ] = dt.date(2026, 1, 1),
    days: Annotated[int, typer.Option(help="Number of business days.")] = 7,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bytes.")] = 42,
    faults: Annotated[
        str | None,
        typer.Option(
            help="Defects to inject: 'rate=0.01' or 'missing_key=0.002,wrong_encoding=1,...'; dataset-level"
            " kinds for the quality gates: 'volume_drop=1,balance_break=1,...' (last day, or dataset_day=DAY)."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Landing folder (default CRM_LANDING_DIR).")] = None,
    truth: Annotated[Path | None, typer.Option(help="Ground-truth folder (default CRM_TRUTH_DIR).")] = None,
) -> None:
    """Write a realistic sample bank: daily channel feeds, manifests, ground truth, fault ledger."""
    from crm.generator import generate as run
    from crm.settings import get_settings

    settings = get_settings()
    result = run(
        customers=customers,
        start=start,
        days=days,
        seed=seed,
        out=out or settings.landing,
        truth=truth or settings.truth,
        faults=faults,
    )
    typer.echo(
        f"wrote {result.files} files to {result.out} ({sum(result.rows.values())} rows; {result.faults} faults)"
    )
    for feed, rows in sorted(result.rows.items()):
        typer.echo(f"  {feed:<18} {rows:>10} rows")
    typer.echo(f"ground truth in {result.truth}")
