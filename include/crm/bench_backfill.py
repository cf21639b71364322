"""``make bench``'s backfill section: Airflow's own backfill against the days run one by one.

The same generated days go twice through the daily DAGs, each into a scratch database: as
``crm run`` runs them (:func:`crm.orchestrate._run_days`: ``airflow dags test`` day after day),
and through the real Airflow (``airflow standalone`` as ``crm airflow`` starts it) with a
backfill of ``crm_ingest`` created through the REST API, whose ``raw_day_passed`` events make
the scheduler trigger ``crm_transform``. Their content is compared by checksum (crm.bench_daily).

The Airflow of the backfill has an Airflow home of its own (``var/bench/backfill_airflow``,
kept for inspection until the next run): the project's ``var/airflow`` already holds the runs
``crm run`` made for these logical dates, which a backfill would skip or clear. Its metadata
is a scratch PostgreSQL database on the warehouse's server, as in production (docker-compose):
with ``crm airflow``'s SQLite, four backfill runs at once killed the scheduler ("database is
locked") with their core feeds still unloaded.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from crm.airflow_api import api_client, free_port, wait_for
from crm.bench_daily import START, _pointed_at, content_checksums, equivalence


@contextlib.contextmanager
def _metadata_database(name: str):
    """A scratch database for Airflow's metadata on the warehouse's server, owned by a login
    of its own (as docker-compose's ``airflow``: no Airflow process holds a warehouse role's
    password for it); yields its SQLAlchemy URL and drops both afterwards."""
    import secrets
    from urllib.parse import urlsplit, urlunsplit

    from crm.warehouse import owner_url, with_database

    admin = with_database(owner_url(), "postgres")
    password = secrets.token_urlsafe(24)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'drop role if exists "{name}"')
        conn.execute(
            psycopg.sql.SQL("create role {} login password {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
        conn.execute(f'grant "{name}" to current_user')  # PostgreSQL 16: to give it a database
        conn.execute(f'create database "{name}" owner "{name}"')
    try:
        parts = urlsplit(with_database(owner_url(), name))
        netloc = f"{name}:{password}@{parts.hostname}:{parts.port}"
        yield urlunsplit(("postgresql+psycopg2", netloc, parts.path, "", ""))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')
            conn.execute(f'drop role if exists "{name}"')


def _start_airflow(home: Path, port: int, metadata: str) -> subprocess.Popen:
    """``airflow standalone`` as ``crm airflow --port`` starts it (the current settings'
    warehouse and landing), with its own Airflow home, metadata database and log-server ports."""
    from crm.airflow_env import protect_password_file, standalone
    from crm.transform import ensure_manifest

    ensure_manifest()  # cosmos renders crm_transform from the manifest
    argv, env = standalone(port=port)
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos_cache"),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    }
    protect_password_file(env)
    with (home / "standalone.log").open("w") as out:  # the child keeps its own copy
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, umask=0o077
        )


def _stop(proc: subprocess.Popen) -> None:
    """End the Airflow process group: TERM, and KILL what is left after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):  # workers left behind in the group
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _runs(api: httpx.Client, dag_id: str) -> list[dict[str, Any]]:
    return api.get(f"/dags/{dag_id}/dagRuns", params={"limit": 100}).raise_for_status().json()["dag_runs"]


def _built_day(api: httpx.Client, run_id: str) -> str | None:
    """The day crm_transform's plan_run planned (its XCom's run_date)."""
    got = api.get(f"/dags/crm_transform/dagRuns/{run_id}/taskInstances/plan_run/xcomEntries/return_value")
    if got.status_code != 200:
        return None
    value = got.json().get("value")
    if isinstance(value, str):  # a dict's repr when the API stringifies it
        value = ast.literal_eval(value)
    return (value or {}).get("run_date")


def _backfill(dates: list[dt.date], home: Path, timeout: float, at_once: int = 1) -> dict[str, Any]:
    """A backfill of crm_ingest over ``dates`` in a fresh Airflow; the runs of both DAGs."""
    from crm.dates import BANK_TZ

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per poll otherwise
    port = free_port()
    stack = contextlib.ExitStack()
    metadata = stack.enter_context(_metadata_database(f"airflow_bench_{uuid.uuid4().hex[:8]}"))
    proc = _start_airflow(home, port, metadata)
    out: dict[str, Any] = {"airflow_home": str(home)}
    try:
        api = api_client(f"http://127.0.0.1:{port}", home)
        wait_for(
            lambda: {"crm_ingest", "crm_transform"} <= {d["dag_id"] for d in api.get("/dags").json()["dags"]},
            600,
            "the DAGs",
            5,
        )
        out["import_errors"] = api.get("/importErrors").json()["total_entries"]
        out["paused_at_start"] = {
            d: api.get(f"/dags/{d}").json()["is_paused"] for d in ("crm_ingest", "crm_transform")
        }
        api.patch("/dags/crm_transform", json={"is_paused": False}).raise_for_status()
        # Logical date = 00:00 local of the business day (CronDataIntervalTimetable in the bank's
        # zone; crm.dates.business_day); both ends inclusive.
        local = [dt.datetime.combine(d, dt.time(), BANK_TZ).isoformat() for d in (dates[0], dates[-1])]
        body = {"dag_id": "crm_ingest", "from_date": local[0], "to_date": local[1], "run_backwards": False}
        body |= {"reprocess_behavior": "none", "max_active_runs": at_once}
        created = api.post("/backfills", json=body).raise_for_status()
        out["backfill"] = {k: created.json().get(k) for k in ("id", "from_date", "to_date")}
        # A paused DAG's runs never leave the queue (DagRun.get_queued_dag_runs_to_set_running).
        api.patch("/dags/crm_ingest", json={"is_paused": False}).raise_for_status()
        clock, quiet = time.monotonic(), 0
        while quiet < 2:  # two polls in a row with nothing left to do
            if time.monotonic() - clock > timeout:
                out["timed_out"] = True
                break
            time.sleep(15)
            try:
                ingest = [r for r in _runs(api, "crm_ingest") if r["run_type"] == "backfill"]
                transform = _runs(api, "crm_transform")
                queued = api.get("/dags/crm_transform/assets/queuedEvents")
            except httpx.HTTPError:  # a busy server: ask again
                continue
            pending = queued.json()["total_entries"] if queued.status_code == 200 else 0
            done = (
                len(ingest) == len(dates)
                and all(r["state"] in ("success", "failed") for r in ingest + transform)
                and not pending
            )
            quiet = quiet + 1 if done else 0
        out["wait_s"] = round(time.monotonic() - clock, 1)
        out["runs"] = [
            {
                "dag": "crm_ingest",
                "run_id": r["dag_run_id"],
                "run_type": r["run_type"],
                "state": r["state"],
                "business_day": r["logical_date"]
                and dt.datetime.fromisoformat(r["logical_date"]).astimezone(BANK_TZ).date().isoformat(),
            }
            for r in sorted(_runs(api, "crm_ingest"), key=lambda r: r["run_after"])
        ]
        for r in sorted(_runs(api, "crm_transform"), key=lambda r: r["run_after"]):
            events = api.get(f"/dags/crm_transform/dagRuns/{r['dag_run_id']}/upstreamAssetEvents").json()
            named = [(e.get("extra") or {}).get("business_day") for e in events.get("asset_events", [])]
            out["runs"].append(
                {
                    "dag": "crm_transform",
                    "run_id": r["dag_run_id"],
                    "run_type": r["run_type"],
                    "state": r["state"],
                    "events_named": sorted(d for d in named if d),
                    "business_day": _built_day(api, r["dag_run_id"]),
                }
            )
    finally:
        _stop(proc)
        stack.close()
    return out


def bench_backfill(
    customers: int, work: Path, days: int = 3, timeout: float = 1800, at_once: int = 1
) -> dict[str, Any]:
    """``days`` days of a ``customers`` bank run day by day (crm run) and through an Airflow
    backfill of crm_ingest (crm_transform triggered by its asset events); content compared.
    ``at_once``: crm_ingest runs the backfill runs at once (a catch-up after an outage: the
    days' events pile up behind a running crm_transform, which pass_on hands on one by one)."""
    from crm.generator import generate
    from crm.orchestrate import _run_days
    from crm.settings import get_settings
    from crm.warehouse import ensure_ready, scratch_database

    base = get_settings()
    ensure_ready(base)
    landing = work / "backfill_landing"
    generate(customers=customers, start=START, days=days, seed=11, out=landing, truth=work / "backfill_truth")
    dates = [START + dt.timedelta(days=d) for d in range(days)]
    report: dict[str, Any] = {"customers": customers, "days": days, "ingest_runs_at_once": at_once}
    suffix = uuid.uuid4().hex[:8]
    home = base.home / "bench" / "backfill_airflow"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    with scratch_database(f"crm_bench_backfill_{suffix}", base) as backfill_url:
        with _pointed_at(backfill_url, landing):
            clock = time.perf_counter()
            airflow = _backfill(dates, home, timeout, at_once)
            report["backfill_s"] = round(time.perf_counter() - clock, 1)
        with psycopg.connect(backfill_url) as conn:
            published = conn.execute("select business_date from dq.published_days order by 1").fetchall()
        backfill_sums = content_checksums(backfill_url)
    with scratch_database(f"crm_bench_days_{suffix}", base) as days_url:
        with _pointed_at(days_url, landing) as settings:
            clock = time.perf_counter()
            failed, _ = _run_days(dates, settings)
            report["day_by_day_s"] = round(time.perf_counter() - clock, 1)
            report["failed"] = [f"{o.dag_id} {o.day}" for o in failed]
        day_sums = content_checksums(days_url)
    report["airflow"] = airflow
    transform = [r for r in airflow.get("runs", []) if r["dag"] == "crm_transform"]
    built = {r["business_day"] for r in transform if r["state"] == "success"}
    report["published_days"] = [d.isoformat() for (d,) in published]
    report["days_not_built"] = [d.isoformat() for d in dates if d.isoformat() not in built]
    report["merged_runs"] = [
        {"run_id": r["run_id"], "events_named": r["events_named"], "built": r["business_day"]}
        for r in transform
        if len(r["events_named"]) > 1
    ]
    report["equivalence"] = equivalence(day_sums, backfill_sums)
    return report
