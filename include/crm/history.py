"""``crm history``: months of business days in the warehouse fast, for the churn model.

The churn labels need history: a snapshot gets its label once its 90-day horizon has
elapsed, and an out-of-time judgement needs several labelled months. Running the daily
pipeline (Airflow, one ``dbt build`` per day) over a year costs hours; most of it repeats
work that one build over the whole range does once. So:

1. Load: every day's files with the real loader (``crm.ingest.service.ingest_day``, the
   code the ``crm_ingest`` tasks call), in day order, in this process: no Airflow task
   start-up per feed and day.
2. Build the facts once: ``dbt build --full-refresh`` as of the last day, tests left for
   step 4. Every incremental fact (transactions, balances, interactions, daily activity)
   covers every day up to the run date on a full refresh, so this equals the day-by-day
   facts.
3. Snapshots the ML features need, one per month end: ``customer_360`` holds one snapshot
   per run date (a full refresh builds the last day's only), and
   ``ml_features_customer_monthly`` keeps the last one of each month. So for every month end
   before the last day, the lineage of the features (``+ml_features_customer_monthly``: the
   staging views as of that day, ``dim_customer``, the activity window, ``customer_360``) is
   run with that run date: the rows a daily run of that day writes. Days inside a month are
   skipped: the features never read them.
4. The last day's daily build (``crm.transform.build``): what a daily run of that day
   writes, with its tests; ``ml_churn_labels`` (rebuilt whole) then sees every month.

What differs from day-by-day runs: the marts keyed by snapshot day other than the features
(``customer_segments``, ``segment_migration``, ``customer_activity_window``, the SCD2
snapshots) hold the month ends and the last day only, not every day.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from crm.cli_options import FirstDay, LastDay

if TYPE_CHECKING:
    from crm.settings import Settings

__all__ = ["FEATURES_LINEAGE", "HistoryResult", "app", "build_history", "load_days", "month_ends"]

# The dbt selection rebuilt at each month end (step 3 of the module docstring).
FEATURES_LINEAGE = "+ml_features_customer_monthly"

Echo = Callable[[str], None]


@dataclass
class HistoryResult:
    first: dt.date
    last: dt.date
    days_loaded: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    refused: list[str] = field(default_factory=list)  # "feed day: reason" of refused files
    month_ends: list[dt.date] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # generate, load, build

    def summary(self) -> str:
        took = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        return (
            f"history {self.first}..{self.last}: {self.days_loaded} days, {self.rows_loaded:,} rows loaded,"
            f" {self.rows_quarantined:,} quarantined, {len(self.refused)} files refused,"
            f" {len(self.month_ends)} month-end snapshots; {took}"
        )


def month_ends(first: dt.date, last: dt.date) -> list[dt.date]:
    """The last day of every month from ``first`` to ``last``, before ``last`` (whose own
    snapshot the final daily build writes)."""
    ends = []
    month = first.replace(day=1)
    while True:
        following = (month + dt.timedelta(days=32)).replace(day=1)
        end = following - dt.timedelta(days=1)
        if end >= last:
            return ends
        if end >= first:
            ends.append(end)
        month = following


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=d) for d in range((last - first).days + 1)]


def load_days(
    first: dt.date,
    last: dt.date,
    *,
    landing: Path | None = None,
    settings: Settings | None = None,
    echo: Echo = print,
    every_seconds: float = 10.0,
    result: HistoryResult | None = None,
) -> HistoryResult:
    """Load every feed of every day, in day order, with the real loader; progress every
    ``every_seconds`` (days loaded, rows, elapsed)."""
    from crm.ingest.service import ingest_day

    result = result or HistoryResult(first, last)
    days = _days(first, last)
    started = last_said = time.monotonic()
    for n, day in enumerate(days, 1):
        loaded, refused = ingest_day(day, landing=landing, settings=settings)
        result.days_loaded += 1
        result.rows_loaded += sum(r.rows_loaded for r in loaded)
        result.rows_quarantined += sum(r.rows_quarantined for r in loaded)
        result.refused += [f"{day}: {err}" for err in refused]
        now = time.monotonic()
        if now - last_said >= every_seconds or n == len(days):
            last_said = now
            echo(
                f"load: {n}/{len(days)} days (through {day}), {result.rows_loaded:,} rows loaded,"
                f" {result.rows_quarantined:,} quarantined, {now - started:.0f} s"
            )
    result.seconds["load"] = round(time.monotonic() - started, 1)
    return result


def build_warehouse(
    first: dt.date,
    last: dt.date,
    *,
    settings: Settings | None = None,
    echo: Echo = print,
    result: HistoryResult | None = None,
) -> HistoryResult:
    """Steps 2-4 of the module docstring: facts once, features per month end, the last day."""
    from crm.transform import build, run_dbt

    result = result or HistoryResult(first, last)
    started = time.monotonic()
    echo(f"build: facts and marts over {first}..{last} (dbt build --full-refresh, tests in the last step)")
    run_dbt(
        ["build", "--full-refresh", "--exclude-resource-type", "test", "unit_test"],
        settings,
        extra_env={"CRM_RUN_DATE": last.isoformat(), "CRM_TEST_WINDOW_START": ""},
    )
    echo(f"build: facts done, {time.monotonic() - started:.0f} s")
    result.month_ends = month_ends(first, last)
    for n, end in enumerate(result.month_ends, 1):
        run_dbt(
            ["run", "--select", FEATURES_LINEAGE],
            settings,
            extra_env={"CRM_RUN_DATE": end.isoformat(), "CRM_TEST_WINDOW_START": ""},
        )
        echo(
            f"build: features as of {end} ({n}/{len(result.month_ends)}), {time.monotonic() - started:.0f} s"
        )
    build(last, settings=settings)
    echo(f"build: daily build of {last} with its tests done, {time.monotonic() - started:.0f} s")
    result.seconds["build"] = round(time.monotonic() - started, 1)
    return result


def build_history(
    first: dt.date,
    last: dt.date,
    *,
    customers: int | None = None,
    seed: int = 42,
    settings: Settings | None = None,
    echo: Echo = print,
) -> HistoryResult:
    """Generate a sample bank (when ``customers`` is given), load ``first``..``last`` and
    build the warehouse over it. The warehouse should hold nothing newer than ``last``."""
    from crm.settings import get_settings
    from crm.warehouse import ensure_ready

    if last < first:
        raise ValueError(f"{last} is before {first}")
    settings = settings or get_settings()
    ensure_ready(settings)
    result = HistoryResult(first, last)
    if customers is not None:
        from crm.generator import generate

        days = (last - first).days + 1
        echo(f"generate: {customers:,} customers x {days} days from {first}, seed {seed}")
        started = time.monotonic()
        generated = generate(
            customers=customers, start=first, days=days, seed=seed, out=settings.landing, truth=settings.truth
        )
        result.seconds["generate"] = round(time.monotonic() - started, 1)
        echo(
            f"generate: {sum(generated.rows.values()):,} rows in {generated.files:,} files,"
            f" {result.seconds['generate']:.0f} s"
        )
    load_days(first, last, settings=settings, echo=echo, result=result)
    build_warehouse(first, last, settings=settings, echo=echo, result=result)
    return result


app = typer.Typer(add_completion=False)


@app.command()
def history(
    from_: FirstDay = None,
    to: LastDay = None,
    history_days: Annotated[
        int | None, typer.Option("--history-days", min=1, help="Days from --from (instead of --to).")
    ] = None,
    customers: Annotated[
        int | None,
        typer.Option(help="Generate a sample bank of this many customers first (default: load what landed)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Generator seed (with --customers).")] = 42,
) -> None:
    """Load a range of days with the real loader and build the warehouse once over them (ML history)."""
    if from_ is None:
        raise typer.BadParameter("give --from", param_hint="'--from'")
    if (to is None) == (history_days is None):
        raise typer.BadParameter("give --to or --history-days (one of them)", param_hint="'--to'")
    last = to if to is not None else from_ + dt.timedelta(days=history_days - 1)
    if last < from_:
        raise typer.BadParameter(f"{last} is before --from {from_}", param_hint="'--to'")
    result = build_history(from_, last, customers=customers, seed=seed, echo=typer.echo)
    typer.echo(result.summary())
    for line in result.refused[:20]:
        typer.echo(f"REFUSED {line}", err=True)
    raise typer.Exit(1 if result.refused else 0)
