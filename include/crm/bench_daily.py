"""``make bench``'s daily_run section: the whole daily flow, stage by stage, with peak memory;
and a range run (``crm run --from D1 --to DN``) against the same days run one at a time.

Both runs go through :func:`crm.orchestrate.run_days` (every daily DAG under ``airflow dags
test``, as ``crm run`` does) on scratch databases of the warehouse server, each from the
same generated landing. The range run is one call for all days; the single-day runs are
one call per day, in the order a scheduler would run them. Their marts, snapshots, model
scores and data-quality results are compared by checksum (:func:`content_checksums`), with
the columns that say *when* something ran left out.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

START = dt.date(2026, 1, 1)
# Schemas whose content a daily run produces (raw and quarantine are the loader's: its own
# bench and tests check them), and columns that record when something ran, not what.
CONTENT_SCHEMAS = ("marts", "snapshots", "ml", "dq")
VOLATILE_COLUMNS = frozenset(
    {
        "scored_at",
        "computed_at",
        "published_at",
        "found_at",
        "started_at",
        "finished_at",
        "trained_at",
        "status_changed_at",
        "run_id",
        "pipeline_run_id",
        "profiled_at",
        "measured_at",
        "load_id",
        "dbt_updated_at",
        "dbt_valid_from",
        "dbt_valid_to",
        "dbt_scd_id",
    }
)


def content_checksums(url: str) -> dict[str, tuple[int, str]]:
    """Rows and an md5 of the sorted rows of every table in :data:`CONTENT_SCHEMAS`, without
    :data:`VOLATILE_COLUMNS` (a relation with nothing else is skipped), by ``schema.table``."""
    with psycopg.connect(url, autocommit=True) as conn:
        columns = conn.execute(
            "select c.table_schema, c.table_name, array_agg(c.column_name::text order by c.ordinal_position)"
            " from information_schema.columns c join pg_class r on r.oid = (quote_ident(c.table_schema)"
            " || '.' || quote_ident(c.table_name))::regclass"
            " where c.table_schema = any(%s) and r.relkind in ('r', 'p', 'v', 'm') and not r.relispartition"
            " group by 1, 2 order by 1, 2",
            (list(CONTENT_SCHEMAS),),
        ).fetchall()
        out: dict[str, tuple[int, str]] = {}
        for schema, table, names in columns:
            kept = [n for n in names if n not in VOLATILE_COLUMNS]
            if not kept:
                continue
            row = sql.SQL("row({})::text").format(sql.SQL(", ").join(map(sql.Identifier, kept)))
            query = sql.SQL(
                "select count(*), md5(coalesce(string_agg(r, '|' order by r), '')) from (select {} as r from {}) t"
            ).format(row, sql.Identifier(schema, table))
            count, digest = conn.execute(query).fetchone()
            out[f"{schema}.{table}"] = (count, digest)
    return out


class _PeakMemory:
    """Peak of the summed resident memory of this process tree and the warehouse server's,
    sampled every ``every`` seconds (psutil) while the block runs."""

    def __init__(self, server_pid: int | None, every: float = 0.5) -> None:
        self.server_pid, self.every = server_pid, every
        self.peak_mib = {"pipeline": 0.0, "warehouse": 0.0, "total": 0.0}
        self._stop = threading.Event()

    @staticmethod
    def _tree_mib(pid: int | None) -> float:
        import psutil

        if pid is None:
            return 0.0
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0.0
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            pipeline, warehouse = self._tree_mib(os.getpid()), self._tree_mib(self.server_pid)
            for key, value in (
                ("pipeline", pipeline),
                ("warehouse", warehouse),
                ("total", pipeline + warehouse),
            ):
                self.peak_mib[key] = max(self.peak_mib[key], value)

    @contextlib.contextmanager
    def watch(self) -> Iterator[dict[str, float]]:
        thread = threading.Thread(target=self._sample, daemon=True)
        thread.start()
        try:
            yield self.peak_mib
        finally:
            self._stop.set()
            thread.join()


def _server_pid(settings) -> int | None:
    """The embedded server's postmaster pid (None for an external warehouse)."""
    pidfile = settings.home / "pgdata" / "postmaster.pid"
    if settings.warehouse_url or not pidfile.exists():
        return None
    return int(pidfile.read_text().splitlines()[0])


@contextlib.contextmanager
def _pointed_at(url: str, landing: Path) -> Iterator[Any]:
    """Settings (and the environment Airflow inherits) pointed at ``url`` and ``landing``."""
    from crm.settings import environment, get_settings

    with environment({"WAREHOUSE_URL": url, "CRM_LANDING_DIR": str(landing)}):
        yield get_settings()


def _records(settings, run_ids: list[str]) -> list[dict[str, Any]]:
    from crm.pipeline_run import read_records

    return [
        {
            "day": r.business_date.isoformat(),
            "stage_s": r.stage_seconds,
            "rows": r.rows.get("total"),
            "quarantined": r.rows_quarantined,
            "published": r.published,
        }
        for r in read_records(run_ids, settings)
    ]


def bench_daily_run(customers: int, work: Path, days: int = 3, equivalence: bool = True) -> dict[str, Any]:
    """``days`` days of a ``customers`` bank through the whole daily flow as one range run,
    stage by stage, with peak memory; with ``equivalence``, the same days again one run per
    day on a second database, and the content of both compared."""
    from crm.generator import generate
    from crm.orchestrate import _run_days
    from crm.settings import get_settings
    from crm.warehouse import ensure_ready, scratch_database

    base = get_settings()
    ensure_ready(base)
    landing = work / "daily_landing"
    clock = time.perf_counter()
    generate(customers=customers, start=START, days=days, seed=11, out=landing, truth=work / "daily_truth")
    report: dict[str, Any] = {
        "customers": customers,
        "days": days,
        "generate_s": round(time.perf_counter() - clock, 1),
    }
    dates = [START + dt.timedelta(days=d) for d in range(days)]
    suffix = uuid.uuid4().hex[:8]
    with scratch_database(f"crm_bench_range_{suffix}", base) as range_url:
        with _pointed_at(range_url, landing) as settings:
            peak = _PeakMemory(_server_pid(base))
            clock = time.perf_counter()
            with peak.watch():
                failed, run_ids = _run_days(dates, settings)
            report["range_run_s"] = round(time.perf_counter() - clock, 1)
            report["failed"] = [f"{o.dag_id} {o.day}" for o in failed]
            report["peak_rss_mib"] = {k: round(v) for k, v in peak.peak_mib.items()}
            report["per_day"] = _records(settings, run_ids)
        if not equivalence or failed:
            return report
        range_sums = content_checksums(range_url)
        with scratch_database(f"crm_bench_single_{suffix}", base) as single_url:
            with _pointed_at(single_url, landing) as settings:
                clock = time.perf_counter()
                for day in dates:
                    single_failed, _ = _run_days([day], settings)
                    if single_failed:
                        report["failed"] += [f"{o.dag_id} {o.day} (single)" for o in single_failed]
                        return report
                report["single_runs_s"] = round(time.perf_counter() - clock, 1)
            single_sums = content_checksums(single_url)
    report["equivalence"] = equivalence(range_sums, single_sums)
    return report


def equivalence(first: dict[str, tuple[int, str]], second: dict[str, tuple[int, str]]) -> dict[str, Any]:
    """Two warehouses' :func:`content_checksums` side by side: what differs, with row counts."""
    differ = sorted(name for name in first.keys() | second.keys() if first.get(name) != second.get(name))
    return {
        "relations_compared": len(first),
        "rows_compared": sum(count for count, _ in first.values()),
        "identical": not differ,
        "differ": differ,
        "rows": {n: [first.get(n, (None,))[0], second.get(n, (None,))[0]] for n in differ},
    }
