"""``crm``: the command line of the platform (warehouse, sample bank, runs, Airflow)."""

from __future__ import annotations

import datetime as dt
import importlib
import os
import shutil
import subprocess
from typing import Annotated, Any, NamedTuple

import typer
from typer.core import TyperCommand, TyperGroup

from crm.cli_options import Day, FirstDay, LastDay
from crm.dates import days_from_options, parse_day
from crm.logs import setup_logging

# `crm --help` must answer at once: this module imports typer and the standard library only.
# Everything heavy (settings/pydantic, psycopg, pandas, airflow, dbt) is imported by the
# command that needs it; the stages' own command modules are imported when one of their
# commands runs (their packages import pandas and psycopg).


class _Stage(NamedTuple):
    module: str  # holds a typer app: one command (mounted as this command) or a group
    help: str  # shown by `crm --help` without importing the module (a test keeps it equal)


STAGES = {
    "generate": _Stage(
        "crm.generator.cli",
        "Write a realistic sample bank: daily channel feeds, manifests, ground truth, fault ledger.",
    ),
    "ingest": _Stage(
        "crm.ingest.cli",
        "Load channel files for a day or range into raw / quarantine, with the load audit.",
    ),
    "history": _Stage(
        "crm.history",
        "Load a range of days with the real loader and build the warehouse once over them (ML history).",
    ),
    "dbt": _Stage("crm.transform.cli", "dbt: the customer warehouse and CRM marts."),
    "feeds": _Stage("crm.feeds.cli", "The feed registry (include/crm/feeds/registry.yml)."),
    "dq": _Stage("crm.quality.cli", "Data-quality gates (Great Expectations): run, docs, suites."),
    "report": _Stage(
        "crm.reporting.cli",
        "Write the daily CRM report of a day: one self-contained HTML page (var/reports/<D>.html).",
    ),
    "ml": _Stage(
        "crm.ml.cli",
        "Churn model: train on a labelled CSV, judge it out of time, save, report and register it; score a day.",
    ),
    "rm": _Stage("crm.rm", "Relationship-manager logins: each RM sees only their own customers."),
    "privacy": _Stage(
        "crm.privacy.cli",
        "Customer-data protection: erase a customer, enforce retention, read the access audit.",
    ),
}


def load_stage(name: str) -> Any:
    """The click command of stage ``name``, from its module (each stage owns its CLI)."""
    sub = importlib.import_module(STAGES[name].module).app
    commands = sub.registered_commands
    # One command and nothing else (typer.main.get_command's rule): mounted as that command.
    if len(commands) == 1 and not (sub.registered_groups or sub.registered_callback or sub.info.callback):
        single = typer.Typer(add_completion=False)
        single.command(name, help=commands[0].callback.__doc__)(commands[0].callback)
        return typer.main.get_command(single)
    group = typer.main.get_group(sub)
    group.name = name
    return group


class _LazyGroup(TyperGroup):
    """Lists the stages from ``STAGES``; imports a stage's module only to run (or complete) it."""

    def list_commands(self, ctx) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in STAGES if n not in self.commands)]

    def get_command(self, ctx, cmd_name: str):
        if cmd_name in self.commands or cmd_name not in STAGES:
            return super().get_command(ctx, cmd_name)
        return TyperCommand(cmd_name, help=STAGES[cmd_name].help)  # a listing entry only

    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        if name in STAGES and name not in self.commands:
            cmd = self.commands[name] = load_stage(name)
        return name, cmd, rest


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"crm-analytics {version('crm-analytics')}")
        raise typer.Exit()


app = typer.Typer(
    cls=_LazyGroup,
    help="Customer-relationship analytics platform for retail banks.",
    no_args_is_help=True,
)
warehouse_app = typer.Typer(help="The warehouse: embedded PostgreSQL unless WAREHOUSE_URL is set.")
app.add_typer(warehouse_app, name="warehouse")


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    setup_logging()


def _server():
    from crm.settings import get_settings
    from crm.warehouse import EmbeddedWarehouse

    settings = get_settings()
    if not settings.embedded:
        typer.echo("WAREHOUSE_URL is set: the warehouse is external, nothing local to manage.")
        raise typer.Exit(0)
    return EmbeddedWarehouse(settings)


@warehouse_app.command("start")
def warehouse_start() -> None:
    """Start the embedded warehouse (if needed) and migrate it to the latest version."""
    from crm.settings import get_settings
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
    argv, env = psql_invocation(ctx.args)
    os.execve(argv[0], argv, env)


def psql_invocation(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """argv and environment of psql as the owner: the password travels in PGPASSWORD (which
    only this user and root can read), never on the command line that `ps` shows everyone."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    from crm.warehouse import owner_url
    from crm.warehouse.server import _pg_bin

    exe = _pg_bin() / "psql"
    psql = str(exe) if exe.exists() else (shutil.which("psql") or "psql")
    parts = urlsplit(owner_url())
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
        parts = parts._replace(netloc=f"{user}@{netloc}")
    return [psql, urlunsplit(parts), *args], env


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
    host: Annotated[
        str, typer.Option(help="Address the UI / API server listens on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
) -> None:
    """Start the real Airflow UI, scheduler and friends locally (airflow standalone)."""
    from crm.airflow_env import standalone
    from crm.warehouse import ensure_ready

    ensure_ready()
    argv, env = standalone(host=host, port=port)
    os.umask(0o077)  # what Airflow writes (its generated admin password among them): owner-only
    os.execve(argv[0], argv, env)


@app.command("run")
def run_cmd(
    date: Day = None,
    from_: FirstDay = None,
    to: LastDay = None,
) -> None:
    """Run the daily pipeline in-process (airflow dags test) for one day or a range."""
    from crm.orchestrate import run_days

    failed = run_days(days_from_options(date, from_, to))
    raise typer.Exit(1 if failed else 0)


@app.command("demo")
def demo_cmd(
    customers: Annotated[int, typer.Option(help="Customers in the sample bank.")] = 2000,
    days: Annotated[int, typer.Option(help="Days of feeds to generate and run.")] = 3,
    start: Annotated[
        dt.date, typer.Option(parser=parse_day, help="First business day (YYYY-MM-DD).")
    ] = dt.date(2026, 1, 1),
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 42,
    history_days: Annotated[
        int,
        typer.Option(
            min=0,
            help="Days of history before the run days, loaded and built directly (crm history) so the"
            " churn model has labelled months to train on; 0: none.",
        ),
    ] = 0,
) -> None:
    """What `make run` does: generate a sample bank, load and build its history, train the churn
    model, run the last days through the whole daily pipeline."""
    from crm.orchestrate import demo

    raise typer.Exit(demo(customers=customers, days=days, start=start, seed=seed, history_days=history_days))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    try:
        app()
    except subprocess.CalledProcessError as err:
        raise SystemExit(err.returncode) from err
