"""The run record: one row of ``audit.pipeline_runs`` per pipeline run of a business day.

``record_run`` computes it from what the warehouse already holds for the day:

* rows loaded per feed, rows quarantined: the day's last successful load per feed (what
  raw holds of the day, ``audit.load_log``); files refused: the day's refused files;
* gates: per gate, the day's last validation of each subject (``dq.validation_runs``):
  suites, suites passed, critical failures, warnings, and the failed critical checks
  (``dq.expectation_results``);
* published: ``dq.published_days`` holds the day, published by this run;
* retention: per layer, what the run's ``retain`` task deleted (``audit.retention_runs`` of
  the run id: days kept, cutoff, partitions dropped, rows deleted, files deleted).

Seconds per stage (``STAGES``) are the caller's: ``crm run`` passes the seconds of each
Airflow task, read from ``airflow dags test``'s own task lines (``crm.orchestrate``). What
the caller does not pass is taken from the warehouse's timestamps (``warehouse_seconds``):
ingest from the load attempts' start and finish, each gate from its validations', dbt from
dbt's own ``elapsed_time`` in the run's artefacts. Publish and report leave no timestamps:
without a caller they stay null. (A task of ``crm_transform`` cannot read other tasks'
durations in Airflow 3: the Task SDK's ``dag_run`` is a plain model without
``get_task_instances`` and tasks have no metadata database access.)

``format_summary`` prints a day's record in one screen.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crm.settings import Settings, get_settings

# A business day's stages, in order; the summary prints them in this order.
STAGES = ("ingest", "gate_raw", "gate_recon", "dbt", "gate_mart", "publish", "report")
GATES = ("raw", "recon", "mart")


@dataclass
class RunRecord:
    run_id: str
    business_date: dt.date
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    stage_seconds: dict[str, float | None] = field(default_factory=dict)
    rows: dict[str, Any] = field(default_factory=dict)
    rows_quarantined: int = 0
    files_refused: int = 0
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_version: str | None = None
    published: bool = False
    retention: dict[str, dict[str, Any]] = field(default_factory=dict)


def dbt_log_dir(run_id: str, settings: Settings | None = None) -> Path:
    """Where ``crm_transform``'s dbt stage keeps a run's dbt log and artefacts (one folder per try)."""
    settings = settings or get_settings()
    return settings.home / "logs" / "dbt" / "crm_transform" / re.sub(r"[^\w.-]+", "_", run_id)


def dbt_seconds(run_id: str, settings: Settings | None = None) -> float | None:
    """dbt's own elapsed time for the run's last try: source freshness + build, from its artefacts."""
    tries = sorted(
        dbt_log_dir(run_id, settings).glob("try_*"),
        key=lambda p: int(p.name.split("_")[1]) if p.name.split("_")[1].isdigit() else 0,
    )
    if not tries:
        return None
    total = None
    for artefact in ("sources.json", "run_results.json"):
        path = tries[-1] / artefact
        try:
            elapsed = json.loads(path.read_text()).get("elapsed_time")
        except (OSError, ValueError):
            continue
        if elapsed is not None:
            total = (total or 0.0) + float(elapsed)
    return None if total is None else round(total, 1)


def _span(first: dt.datetime | None, last: dt.datetime | None) -> float | None:
    if first is None or last is None:
        return None
    return round((last - first).total_seconds(), 1)


def warehouse_seconds(conn, day: dt.date) -> dict[str, float | None]:
    """Seconds of the stages that leave timestamps in the warehouse: the day's last load
    attempt per feed (first start to last finish) and each gate's last validations."""
    seconds: dict[str, float | None] = {}
    first, last = conn.execute(
        """
        select min(started_at), max(finished_at) from (
            select distinct on (feed) started_at, finished_at from audit.load_log
            where business_date = %s and status <> 'running'
            order by feed, load_id desc
        ) latest
        """,
        (day,),
    ).fetchone()
    seconds["ingest"] = _span(first, last)
    for gate in GATES:
        first, last = conn.execute(
            """
            select min(started_at), max(finished_at) from (
                select distinct on (subject) started_at, finished_at from dq.validation_runs
                where gate = %s and business_date = %s
                order by subject, run_id desc
            ) latest
            """,
            (gate, day),
        ).fetchone()
        seconds[f"gate_{gate}"] = _span(first, last)
    return seconds


def compute_record(conn, day: dt.date, run_id: str) -> RunRecord:
    """The day's record from the warehouse (seconds: the warehouse's own timestamps only)."""
    record = RunRecord(run_id=run_id, business_date=day)
    loaded = conn.execute(
        """
        select distinct on (feed) feed, coalesce(rows_loaded, 0), coalesce(rows_quarantined, 0)
        from audit.load_log where business_date = %s and status = 'loaded'
        order by feed, load_id desc
        """,
        (day,),
    ).fetchall()
    per_feed = {feed: int(rows) for feed, rows, _ in loaded}
    record.rows = {"per_feed": dict(sorted(per_feed.items())), "total": sum(per_feed.values())}
    record.rows_quarantined = int(sum(q for *_, q in loaded))
    record.files_refused = conn.execute(
        "select count(distinct (feed, file_path, coalesce(file_sha256, ''))) from audit.load_log"
        " where business_date = %s and status = 'refused'",
        (day,),
    ).fetchone()[0]
    record.started_at = conn.execute(
        """
        select min(started_at) from (
            select distinct on (feed) started_at from audit.load_log
            where business_date = %s and status <> 'running' order by feed, load_id desc
        ) latest
        """,
        (day,),
    ).fetchone()[0]

    latest = conn.execute(
        """
        select distinct on (gate, subject) run_id, gate, success, critical_failures, warnings, started_at
        from dq.validation_runs where business_date = %s
        order by gate, subject, run_id desc
        """,
        (day,),
    ).fetchall()
    for _, gate, success, critical, warnings, _ in latest:
        g = record.gates.setdefault(
            gate, {"suites": 0, "passed": 0, "critical": 0, "warnings": 0, "failed": []}
        )
        g["suites"] += 1
        g["passed"] += int(success)
        g["critical"] += critical
        g["warnings"] += warnings
    if latest:
        failed = conn.execute(
            """
            select distinct r.gate, e.check_name
            from dq.expectation_results e join dq.validation_runs r using (run_id)
            where e.run_id = any(%s) and not e.success and e.severity = 'critical'
            order by 1, 2
            """,
            ([row[0] for row in latest],),
        ).fetchall()
        for gate, check in failed:
            record.gates[gate]["failed"].append(check)
        gate_start = min(row[5] for row in latest)
        record.started_at = min(filter(None, [record.started_at, gate_start]), default=None)
    record.gates = {g: record.gates[g] for g in GATES if g in record.gates}

    record.published = bool(
        conn.execute(
            "select 1 from dq.published_days where business_date = %s and pipeline_run_id = %s",
            (day, run_id),
        ).fetchone()
    )
    record.stage_seconds = warehouse_seconds(conn, day)
    record.retention = retention_counts(conn, run_id)
    return record


def retention_counts(conn, run_id: str) -> dict[str, dict[str, Any]]:
    """What the run's retention task deleted, per layer (its last application of each)."""
    rows = conn.execute(
        """
        select distinct on (layer) layer, retain_days, cutoff, partitions_dropped, rows_deleted, files_deleted
        from audit.retention_runs where run_id = %s order by layer, retention_run_id desc
        """,
        (run_id,),
    ).fetchall()
    return {
        layer: {
            "retain_days": days,
            "cutoff": cutoff.isoformat(),
            "partitions_dropped": partitions,
            "rows_deleted": int(deleted),
            "files_deleted": files,
        }
        for layer, days, cutoff, partitions, deleted, files in rows
    }


def record_run(
    day: dt.date,
    run_id: str,
    stage_seconds: dict[str, float | None] | None = None,
    *,
    started_at: dt.datetime | None = None,
    finished_at: dt.datetime | None = None,
    model_version: str | None = None,
    settings: Settings | None = None,
) -> RunRecord:
    """Compute the run's record and upsert it into ``audit.pipeline_runs`` (as ``crm_transformer``).

    ``stage_seconds``: the caller's measured seconds per stage (``STAGES``); a stage it does
    not give (or gives as None) falls back to the warehouse's timestamps, then dbt's
    artefacts. Re-recording the same ``run_id`` replaces the row.
    """
    from crm.warehouse import connect

    settings = settings or get_settings()
    with connect("crm_transformer", settings=settings) as conn:
        record = compute_record(conn, day, run_id)
        measured = {k: v for k, v in (stage_seconds or {}).items() if v is not None}
        if "dbt" not in measured:
            measured["dbt"] = dbt_seconds(run_id, settings)
        seconds = record.stage_seconds | measured
        record.stage_seconds = {
            s: (round(seconds[s], 1) if seconds.get(s) is not None else None) for s in STAGES
        }
        record.started_at = started_at or record.started_at
        record.finished_at = finished_at or dt.datetime.now(dt.UTC)
        record.model_version = model_version
        conn.execute(
            """
            insert into audit.pipeline_runs (run_id, business_date, started_at, finished_at, stage_seconds,
                rows, rows_quarantined, files_refused, gates, model_version, published, retention)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            on conflict (run_id) do update set business_date = excluded.business_date,
                started_at = excluded.started_at, finished_at = excluded.finished_at,
                stage_seconds = excluded.stage_seconds, rows = excluded.rows,
                rows_quarantined = excluded.rows_quarantined, files_refused = excluded.files_refused,
                gates = excluded.gates, model_version = excluded.model_version,
                published = excluded.published, retention = excluded.retention,
                recorded_at = clock_timestamp()
            """,
            (
                record.run_id,
                record.business_date,
                record.started_at,
                record.finished_at,
                json.dumps(record.stage_seconds),
                json.dumps(record.rows),
                record.rows_quarantined,
                record.files_refused,
                json.dumps(record.gates),
                record.model_version,
                record.published,
                json.dumps(record.retention),
            ),
        )
    return record


def read_records(run_ids: list[str], settings: Settings | None = None) -> list[RunRecord]:
    """The recorded runs ``run_ids`` from ``audit.pipeline_runs``, in that order (missing ones left out)."""
    from crm.warehouse import connect

    with connect("crm_transformer", settings=settings) as conn:
        rows = conn.execute(
            """
            select run_id, business_date, started_at, finished_at, stage_seconds, rows, rows_quarantined,
                   files_refused, gates, model_version, published, retention
            from audit.pipeline_runs where run_id = any(%s)
            """,
            (list(run_ids),),
        ).fetchall()
    found = {row[0]: RunRecord(*row) for row in rows}
    return [found[r] for r in run_ids if r in found]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def format_summary(record: RunRecord) -> str:
    """A day's record in a few lines: seconds per stage, rows, gates, published."""
    secs = record.stage_seconds or {}
    total = sum(v for v in secs.values() if v is not None)
    lines = [
        f"{record.business_date}  run {record.run_id}  published: {'yes' if record.published else 'NO'}",
        "  seconds  " + "  ".join(f"{s} {_seconds(secs.get(s))}" for s in STAGES) + f"  (total {total:.1f}s)",
    ]
    per_feed = (record.rows or {}).get("per_feed", {})
    lines.append(
        f"  rows     {(record.rows or {}).get('total', 0):,} loaded from {len(per_feed)} feeds, "
        f"{record.rows_quarantined:,} quarantined, {record.files_refused} file(s) refused"
    )
    gates = []
    for gate in GATES:
        g = (record.gates or {}).get(gate)
        if g is None:
            gates.append(f"{gate} not run")
            continue
        text = f"{gate} {g['passed']}/{g['suites']} passed, {g['warnings']} warn, {g['critical']} critical"
        if g.get("failed"):
            text += f" ({', '.join(g['failed'][:3])}{', ...' if len(g['failed']) > 3 else ''})"
        gates.append(text)
    lines.append("  gates    " + "; ".join(gates))
    if record.retention:
        kept = []
        for layer, r in record.retention.items():
            if layer == "raw":
                kept.append(f"raw {r['partitions_dropped']} partitions / {r['rows_deleted']:,} rows")
            elif layer in ("quarantine", "history"):
                kept.append(f"{layer} {r['rows_deleted']:,} rows")
            else:
                kept.append(f"{layer} {r['files_deleted']} files")
        lines.append("  retained " + "; ".join(kept) + " deleted")
    return "\n".join(lines)


def _gate_totals(record: RunRecord) -> tuple[int, int, int, int]:
    gates = (record.gates or {}).values()
    return tuple(sum(g[k] for g in gates) for k in ("passed", "suites", "warnings", "critical"))


def format_table(records: list[RunRecord]) -> str:
    """One line per day: seconds per stage, rows, gates, published (for ranges of days)."""
    heads = ["ingest", "g_raw", "g_recon", "dbt", "g_mart", "publish", "report"]
    lines = [
        f"{'day':<10} "
        + " ".join(f"{h:>7}" for h in heads)
        + "    rows  quar ref  gates pass/warn/crit  published"
    ]
    for r in records:
        secs = r.stage_seconds or {}
        cells = " ".join(f"{'-' if secs.get(s) is None else f'{secs[s]:.1f}':>7}" for s in STAGES)
        passed, suites, warnings, critical = _gate_totals(r)
        lines.append(
            f"{r.business_date!s:<10} {cells} {(r.rows or {}).get('total', 0):>7} {r.rows_quarantined:>5}"
            f" {r.files_refused:>3}  {passed:>4}/{suites:<3} {warnings:>4} {critical:>4}       "
            f"{'yes' if r.published else 'NO'}"
        )
    return "\n".join(lines)
