"""Retention per layer: landing files, raw, quarantine, logs, history (docs/security.md, Retention).

Days are counted back from the business day being run, not the wall clock: applying
retention for day D deletes what belongs to days before ``D - days`` of each layer.

- **raw, quarantine**: the owner's ``audit.apply_retention(D, run_id, dry_run)`` (migration
  0017) drops registered feeds' day partitions and deletes quarantined rows older than the
  cutoffs of the owner-only policy (``private.retention_policy``, written by ``crm migrate``
  from ``CRM_RETAIN_*``); the caller (``crm_loader``) names the day only.
- **landing**: day folders ``<landing>/<feed>/<YYYY-MM-DD>/`` older than the landing cutoff.
- **history**: the transformer's incremental marts and dbt snapshots (dbt's manifest says
  which: an incremental model whose ``unique_key`` is one date column, a snapshot by
  ``dbt_valid_to``) lose their rows of periods before raw's cutoff, so no derived history
  outlives the records it came from and a full refresh reproduces what is kept.
- **logs**: files under ``<CRM_HOME>/logs`` last modified before the log cutoff, and never one
  younger than the same number of days by the wall clock (a replayed past business day must
  not delete today's logs).

Every application (not a dry run) is recorded per layer in ``audit.retention_runs``; the run
record (``audit.pipeline_runs.retention``) reads it back by run id.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from crm.cli_options import Day
from crm.settings import Settings, get_settings

LAYERS = ("landing", "raw", "quarantine", "logs", "history")
# ml_churn_labels: a labelled snapshot's churn window (churn_horizon_days) ends at most on the
# run date, and its TRB is judged against a trailing window of six calendar month rows
# (range '5 months' preceding and the current month: at most 6 x 31 days).
CHURN_TRB_TRAILING_DAYS = 6 * 31
# The dbt vars that are look-backs (days) from the run date.
LOOKBACK_VARS = (
    "activity_window_days",
    "inactive_after_days",
    "new_customer_days",
    "worklist_low_activity_days",
    "churn_horizon_days",
)


class RetentionSettingError(ValueError):
    """A retention setting the platform refuses; the message names the variable and the rule."""


def longest_lookback_days() -> tuple[int, str]:
    """The longest look-back of the marts and the churn features (days back from the run
    date, dbt_project.yml vars) and what it is made of."""
    from crm.project_vars import dbt_vars

    values = dbt_vars()
    candidates = {name: int(values[name]) for name in LOOKBACK_VARS}
    churn = int(values["churn_horizon_days"]) + CHURN_TRB_TRAILING_DAYS
    candidates[f"churn_horizon_days + {CHURN_TRB_TRAILING_DAYS} (churn label's 6-month TRB window)"] = churn
    name = max(candidates, key=lambda k: candidates[k])
    return candidates[name], name


def raw_feeds_kept(settings: Settings) -> list[str]:
    return sorted({f.strip() for f in settings.retain_raw_keep_feeds.split(",") if f.strip()})


def check_retention(settings: Settings) -> None:
    """:class:`RetentionSettingError` if raw would not outlive the marts' longest look-back, or a
    kept feed is not in the registry."""
    from crm.feeds import load_registry

    needed, why = longest_lookback_days()
    if settings.retain_raw_days <= needed:
        raise RetentionSettingError(
            f"CRM_RETAIN_RAW_DAYS={settings.retain_raw_days} is too short: raw must be kept longer than"
            f" the longest look-back of the marts and churn features, {needed} days ({why},"
            f" dbt_project/dbt_project.yml vars); set at least {needed + 1} (default 2557, 7 years)"
        )
    feeds = set(load_registry().feeds)
    unknown = [f for f in raw_feeds_kept(settings) if f not in feeds]
    if unknown:
        raise RetentionSettingError(
            f"CRM_RETAIN_RAW_KEEP_FEEDS names feeds not in the registry: {', '.join(unknown)}"
        )


@dataclass
class LayerResult:
    layer: str
    retain_days: int
    cutoff: dt.date
    partitions: int = 0
    rows: int = 0
    files: int = 0

    def as_json(self) -> dict:
        return {
            "retain_days": self.retain_days,
            "cutoff": self.cutoff.isoformat(),
            "partitions_dropped": self.partitions,
            "rows_deleted": self.rows,
            "files_deleted": self.files,
        }


@dataclass
class RetentionResult:
    business_day: dt.date
    dry_run: bool
    layers: dict[str, LayerResult] = field(default_factory=dict)

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        lines = [f"retention for business day {self.business_day}{' (dry run)' if self.dry_run else ''}:"]
        for name in LAYERS:
            r = self.layers[name]
            what = {
                "raw": f"{r.partitions} partition(s), {r.rows:,} row(s)",
                "quarantine": f"{r.rows:,} row(s)",
                "history": f"{r.rows:,} row(s) of marts and snapshots",
            }.get(name, f"{r.files} file(s)")
            lines.append(f"  {name:<10} keep {r.retain_days:>5} days, before {r.cutoff}: {verb} {what}")
        return "\n".join(lines)


def _tree_files(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return 1
    return sum(
        len(files) + sum(1 for d in dirs if (Path(root) / d).is_symlink())
        for root, dirs, files in os.walk(path)
    )


def expire_landing(landing: Path, cutoff: dt.date, *, dry_run: bool = False) -> int:
    """Delete the day folders ``<landing>/<feed>/<YYYY-MM-DD>`` of days before ``cutoff``;
    the number of files they held. Other names are left alone."""
    if not landing.is_dir():
        return 0
    files = 0
    for feed_dir in sorted(p for p in landing.iterdir() if p.is_dir() and not p.is_symlink()):
        for day_dir in sorted(feed_dir.iterdir()):
            try:
                day = dt.date.fromisoformat(day_dir.name)
            except ValueError:
                continue
            if day >= cutoff or len(day_dir.name) != 10:
                continue
            files += _tree_files(day_dir)
            if dry_run:
                continue
            if day_dir.is_symlink() or not day_dir.is_dir():
                day_dir.unlink()
            else:
                shutil.rmtree(day_dir)
    return files


def log_cutoff(cutoff: dt.date, retain_days: int, today: dt.date | None = None) -> dt.datetime:
    """The moment before which a log file is deleted: the business cutoff's start (bank time),
    but never later than ``retain_days`` before now (the wall clock)."""
    from crm.dates import BANK_TZ

    now = dt.datetime.now(BANK_TZ)
    today = today or now.date()
    business = dt.datetime.combine(cutoff, dt.time(), BANK_TZ)
    wall = dt.datetime.combine(today - dt.timedelta(days=retain_days), dt.time(), BANK_TZ)
    return min(business, wall)


def expire_logs(logs: Path, before: dt.datetime, *, dry_run: bool = False) -> int:
    """Delete files under ``logs`` last modified before ``before`` (symbolic links are not
    followed), then the folders left empty; the number of files."""
    if not logs.is_dir():
        return 0
    limit = before.timestamp()
    files = 0
    for root, dirs, names in os.walk(logs, topdown=False):
        for name in names + [d for d in dirs if (Path(root) / d).is_symlink()]:
            path = Path(root) / name
            if path.lstat().st_mtime < limit:
                files += 1
                if not dry_run:
                    path.unlink()
        if not dry_run and Path(root) != logs and not any(Path(root).iterdir()):
            Path(root).rmdir()
    return files


def history_tables(manifest: dict) -> list[tuple[str, str, str]]:
    """(schema, table, column) of every relation of dbt's ``manifest`` that keeps history: an
    incremental model whose ``unique_key`` is one column (its period: a day, a snapshot
    date, a month), a snapshot by ``dbt_valid_to`` (the end of a version)."""
    found = []
    for node in manifest.get("nodes", {}).values():
        config, table = node.get("config") or {}, node.get("alias") or node.get("name")
        if node.get("resource_type") == "snapshot":
            found.append((node["schema"], table, "dbt_valid_to"))
        elif config.get("materialized") == "incremental" and isinstance(config.get("unique_key"), str):
            found.append((node["schema"], table, config["unique_key"]))
    return sorted(found)


def expire_history(
    conn, cutoff: dt.date, tables: list[tuple[str, str, str]], *, dry_run: bool = False
) -> int:
    """Delete (or count) the rows of ``tables`` whose period column is before ``cutoff``, on
    ``conn`` (the transformer: it owns them). A table that does not exist, is not the
    connection's own or whose column is not a date or timestamp is left alone."""
    from psycopg import sql

    rows = 0
    for schema, table, column in tables:
        owned = conn.execute(
            "select 1 from pg_class c join pg_attribute a on a.attrelid = c.oid"
            " where c.oid = to_regclass(%s) and c.relkind = 'r' and pg_get_userbyid(c.relowner) = current_user"
            " and a.attname = %s and a.atttypid in ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype)",
            (f'"{schema}"."{table}"', column),
        ).fetchone()
        if not owned:
            continue
        where = sql.SQL("from {}.{} where {} < %s").format(
            sql.Identifier(schema), sql.Identifier(table), sql.Identifier(column)
        )
        if dry_run:
            rows += conn.execute(sql.SQL("select count(*) ") + where, (cutoff,)).fetchone()[0]
        else:
            rows += conn.execute(sql.SQL("delete ") + where, (cutoff,)).rowcount
    return rows


def _manifest(settings: Settings) -> dict:
    """dbt's manifest of the project (``dbt parse`` first if it is missing or stale)."""
    import json

    from crm.transform import ensure_manifest

    return json.loads(ensure_manifest(settings).read_text(encoding="utf-8"))


def apply_retention(
    day: dt.date,
    *,
    dry_run: bool = False,
    run_id: str | None = None,
    conninfo: str | None = None,
    history_conninfo: str | None = None,
    history: list[tuple[str, str, str]] | None = None,
    settings: Settings | None = None,
) -> RetentionResult:
    """Retention for business day ``day`` as ``crm_loader`` (``conninfo``: its URL, e.g. the
    Airflow connection's; default: :func:`crm.warehouse.connect`): raw and quarantine by the
    owner's function, then landing and log files here, each recorded with its count; then the
    history of marts and snapshots as ``crm_transformer`` (``history_conninfo``): the tables
    of ``history`` (schema, table, period column), by default those of dbt's manifest."""
    import psycopg

    from crm.warehouse import connect

    settings = settings or get_settings()
    result = RetentionResult(business_day=day, dry_run=dry_run)
    conn = psycopg.connect(conninfo) if conninfo else connect("crm_loader", settings=settings)
    with conn:
        rows = conn.execute(
            "select layer, retain_days, cutoff, partitions_dropped, rows_deleted"
            " from audit.apply_retention(%s, %s, %s)",
            (day, run_id, dry_run),
        ).fetchall()
        for layer, days, cutoff, partitions, deleted in rows:
            result.layers[layer] = LayerResult(layer, days, cutoff, int(partitions), int(deleted))
        conn.commit()  # raw and quarantine are done whatever happens to the files
        landing, logs = result.layers["landing"], result.layers["logs"]
        landing.files = expire_landing(settings.landing, landing.cutoff, dry_run=dry_run)
        before = log_cutoff(logs.cutoff, logs.retain_days)
        logs.files = expire_logs(settings.home / "logs", before, dry_run=dry_run)
        if not dry_run:
            for r in (landing, logs):
                conn.execute(
                    "select audit.record_file_retention(%s, %s, %s, %s)", (day, r.layer, r.files, run_id)
                )
    layer = result.layers["history"]
    tables = history_tables(_manifest(settings)) if history is None else history
    owner = (
        psycopg.connect(history_conninfo)
        if history_conninfo
        else connect("crm_transformer", settings=settings)
    )
    with owner:
        layer.rows = expire_history(owner, layer.cutoff, tables, dry_run=dry_run)
        if not dry_run:
            owner.execute("select audit.record_history_retention(%s, %s, %s)", (day, layer.rows, run_id))
    return result


def retain_cmd(
    date: Day = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
) -> None:
    """Apply retention for a business day: drop raw partitions and quarantined rows, landing
    day folders and log files older than each layer's CRM_RETAIN_*_DAYS; print counts per layer."""
    import psycopg

    from crm.warehouse import ensure_ready

    if date is None:
        raise typer.BadParameter("--date is required (the business day; days are counted back from it)")
    settings = get_settings()
    try:
        check_retention(settings)
        ensure_ready(settings)  # also writes the policy from the settings
        result = apply_retention(date, dry_run=dry_run, run_id=None, settings=settings)
    except RetentionSettingError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    except psycopg.errors.InvalidParameterValue as err:  # a day after the last loaded one
        typer.echo(f"error: {err.diag.message_primary}", err=True)
        raise typer.Exit(2) from None
    typer.echo(result.summary())
