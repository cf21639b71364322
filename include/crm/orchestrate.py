"""Run the daily pipeline in-process with ``airflow dags test``: one day, a range, the demo."""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from crm.settings import Settings, get_settings

log = logging.getLogger(__name__)

# The daily DAGs, in the order a day flows through them.
DAILY_DAGS = ("crm_ingest", "crm_transform")


@dataclass
class DagRunOutcome:
    dag_id: str
    day: dt.date
    ok: bool
    seconds: float
    log: Path

    def failure_excerpt(self, length: int = 50) -> str:
        """Where the run went wrong: its log from the first error on (or its end), ``length`` lines."""
        lines = self.log.read_text(errors="replace").splitlines()
        marks = ("Traceback", "ERROR", "Task failed", "state=failed", "DagRunState.FAILED")
        first = next((i for i, line in enumerate(lines) if any(m in line for m in marks)), None)
        start = max(0, len(lines) - length) if first is None else first
        return "\n".join([f"{self.dag_id} {self.day}: {self.log}", *lines[start : start + length]])


def available_dags() -> list[str]:
    from crm.settings import REPO_ROOT

    return [d for d in DAILY_DAGS if (REPO_ROOT / "dags" / f"{d}.py").exists()]


def run_dag(dag_id: str, day: dt.date, settings: Settings | None = None) -> DagRunOutcome:
    """``airflow dags test DAG DAY`` with the project environment; ok = the run succeeded."""
    from crm.airflow_env import airflow_environ, ensure_metadata_db

    settings = settings or get_settings()
    ensure_metadata_db(settings)
    if dag_id == "crm_transform":
        from crm.transform import ensure_manifest

        ensure_manifest(settings)  # cosmos renders the DAG from the manifest
    env = airflow_environ(settings)
    started = time.monotonic()
    import os

    exe = Path(os.sys.executable).with_name("airflow")
    proc = subprocess.run(
        [str(exe), "dags", "test", dag_id, day.isoformat()],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seconds = time.monotonic() - started
    logfile = settings.home / "logs" / f"{dag_id}_{day.isoformat()}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    logfile.write_text(proc.stdout)
    # `airflow dags test` exits non-zero when the DagRun failed ("DagRun failed"), so its exit
    # code is the verdict; the output is only kept as the run's log.
    ok = proc.returncode == 0
    log.info("dag=%s day=%s ok=%s seconds=%.1f log=%s", dag_id, day, ok, seconds, logfile)
    return DagRunOutcome(dag_id, day, ok, seconds, logfile)


def run_days(days: list[dt.date], settings: Settings | None = None) -> list[DagRunOutcome]:
    """Run each day through every daily DAG; returns the failed runs (empty = all good)."""
    from crm.warehouse import ensure_ready

    settings = settings or get_settings()
    ensure_ready(settings)
    failed: list[DagRunOutcome] = []
    for day in days:
        for dag_id in available_dags():
            outcome = run_dag(dag_id, day, settings)
            print(f"{day}  {dag_id:<14} {'ok' if outcome.ok else 'FAILED':<6} {outcome.seconds:6.1f}s")
            if not outcome.ok:
                failed.append(outcome)
                print(outcome.failure_excerpt())
                break  # the day's later stages need this one
    return failed


def demo(customers: int, days: int, start: dt.date, seed: int, settings: Settings | None = None) -> int:
    """Fresh sample bank -> every day through the pipeline -> say where everything is."""
    from crm.generator import generate
    from crm.report import warehouse_summary
    from crm.warehouse import ensure_ready, owner_url, redact, role_url

    settings = settings or get_settings()
    ensure_ready(settings)
    print(f"generating a sample bank: {customers} customers, {days} days from {start}, seed {seed}")
    generate(
        customers=customers, start=start, days=days, seed=seed, out=settings.landing, truth=settings.truth
    )
    failed = run_days([start + dt.timedelta(d) for d in range(days)], settings)
    print()
    print(warehouse_summary(settings))
    print()
    # Passwords stay off the terminal and CI logs: `crm warehouse url` / `crm bi-url` print them.
    print(f"warehouse (owner): {redact(owner_url(settings))}   (full: crm warehouse url)")
    print(f"BI, read-only:     {redact(role_url('crm_bi_reader', settings))}   (full: crm bi-url)")
    print(f"run logs:          {settings.home / 'logs'}")
    last = start + dt.timedelta(days - 1)
    report = settings.home / "reports" / f"{last.isoformat()}.html"
    if report.exists():
        print(f"daily report:      {report.as_uri()}")
    docs = settings.home / "gx" / "data_docs" / "index.html"
    if docs.exists():
        print(f"quality gates:     {docs.as_uri()}   (crm dq run --date {last})")
    print("dbt docs:          crm dbt docs   (serves every model and column)")
    if failed:
        print(f"FAILED: {', '.join(f'{f.dag_id} {f.day}' for f in failed)}")
        return 1
    return 0
