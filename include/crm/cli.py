"""``crm``: the command line of the platform (warehouse, sample bank, runs, Airflow)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from crm.logs import setup_logging
from crm.settings import get_settings

app = typer.Typer(help="Customer-relationship analytics platform for retail banks.", no_args_is_help=True)
warehouse_app = typer.Typer(help="The warehouse: embedded PostgreSQL unless WAREHOUSE_URL is set.")
app.add_typer(warehouse_app, name="warehouse")


@app.callback()
def _main() -> None:
    setup_logging()


def _server():
    from crm.warehouse import EmbeddedWarehouse

    settings = get_settings()
    if not settings.embedded:
        typer.echo("WAREHOUSE_URL is set: the warehouse is external, nothing local to manage.")
        raise typer.Exit(0)
    return EmbeddedWarehouse(settings)


@warehouse_app.command("start")
def warehouse_start() -> None:
    """Start the embedded warehouse (if needed) and migrate it to the latest version."""
    from crm.warehouse import ensure_ready, owner_url, redact
    from crm.warehouse.server import EmbeddedWarehouse

    settings = get_settings()
    ensure_ready(settings)
    if settings.embedded:
        typer.echo(f"warehouse {EmbeddedWarehouse(settings).status()}")
    typer.echo(f"owner URL: {redact(owner_url(settings))}   (full: crm warehouse url)")


@warehouse_app.command("stop")
def warehouse_stop() -> None:
    """Stop the embedded warehouse; data stays in var/pgdata."""
    typer.echo(f"warehouse {_server().stop()}")


@warehouse_app.command("status")
def warehouse_status() -> None:
    """Say whether the embedded warehouse runs, where, and what it holds."""
    status = _server().status()
    typer.echo(f"warehouse {status}")
    if status.running:
        from crm.report import warehouse_summary

        typer.echo(warehouse_summary())
    raise typer.Exit(0 if status.running else 3)


@warehouse_app.command("url")
def warehouse_url(
    role: Annotated[str | None, typer.Option(help="Print the URL of this platform role instead.")] = None,
) -> None:
    """Print the owner connection string (or a role's)."""
    from crm.warehouse import owner_url, role_url

    typer.echo(role_url(role) if role else owner_url())


@warehouse_app.command("psql", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def warehouse_psql(ctx: typer.Context) -> None:
    """Open psql on the warehouse (extra arguments are passed to psql)."""
    from crm.warehouse import owner_url
    from crm.warehouse.server import _pg_bin

    exe = _pg_bin() / "psql"
    psql = str(exe) if exe.exists() else (shutil.which("psql") or "psql")
    os.execv(psql, [psql, owner_url(), *ctx.args])


@app.command("bi-url")
def bi_url() -> None:
    """Print the read-only connection string for BI tools (role crm_bi_reader, marts only)."""
    from crm.warehouse import role_url

    typer.echo(role_url("crm_bi_reader"))


@app.command("migrate")
def migrate_cmd() -> None:
    """Apply the warehouse migrations (idempotent)."""
    from crm.warehouse import ensure_ready

    ensure_ready()
    typer.echo("warehouse migrated to head")


@app.command("airflow")
def airflow_cmd(
    port: Annotated[int, typer.Option(help="Port of the Airflow UI / API server.")] = 8080,
) -> None:
    """Start the real Airflow UI, scheduler and friends locally (airflow standalone)."""
    from crm.airflow_env import airflow_environ
    from crm.warehouse import ensure_ready

    ensure_ready()
    env = airflow_environ()
    env["AIRFLOW__API__PORT"] = str(port)
    exe = Path(os.sys.executable).with_name("airflow")
    os.execve(str(exe), [str(exe), "standalone"], env)


def _parse_day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


@app.command("run")
def run_cmd(
    date: Annotated[str | None, typer.Option("--date", help="Business day to run (YYYY-MM-DD).")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="First day of a range.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Last day of a range (inclusive).")] = None,
) -> None:
    """Run the daily pipeline in-process (airflow dags test) for one day or a range."""
    from crm.orchestrate import run_days

    if date and (from_ or to):
        raise typer.BadParameter("use either --date or --from/--to")
    if date:
        days = [_parse_day(date)]
    elif from_ and to:
        first, last = _parse_day(from_), _parse_day(to)
        if last < first:
            raise typer.BadParameter("--to is before --from")
        days = [first + dt.timedelta(d) for d in range((last - first).days + 1)]
    else:
        raise typer.BadParameter("give --date D or --from A --to B")
    failed = run_days(days)
    raise typer.Exit(1 if failed else 0)


@app.command("demo")
def demo_cmd(
    customers: Annotated[int, typer.Option(help="Customers in the sample bank.")] = 2000,
    days: Annotated[int, typer.Option(help="Days of feeds to generate and run.")] = 3,
    start: Annotated[str, typer.Option(help="First business day.")] = "2026-01-01",
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 42,
) -> None:
    """What `make run` does: generate a sample bank, run every day through the pipeline."""
    from crm.orchestrate import demo

    raise typer.Exit(demo(customers=customers, days=days, start=_parse_day(start), seed=seed))


def _mount_optional(module: str, name: str) -> None:
    """Mount a stage's own sub-commands (each stage owns its CLI)."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:  # only "this stage is not built yet" is tolerated
        if err.name and module.startswith(err.name):
            return
        raise
    sub = getattr(mod, "app", None)
    if sub is None:
        return
    commands = sub.registered_commands
    if len(commands) == 1 and not sub.registered_groups:
        app.command(name, help=commands[0].callback.__doc__)(commands[0].callback)
    else:
        app.add_typer(sub, name=name)


_mount_optional("crm.generator.cli", "generate")
_mount_optional("crm.ingest.cli", "ingest")
_mount_optional("crm.transform.cli", "dbt")
app.add_typer(__import__("crm.feeds.cli", fromlist=["app"]).app, name="feeds")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    try:
        app()
    except subprocess.CalledProcessError as err:
        raise SystemExit(err.returncode) from err
