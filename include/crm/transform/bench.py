"""dbt cost of a one-day incremental run versus a full refresh (called by ``make bench``)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import psycopg

START = dt.date(2026, 1, 1)


def _rows(result) -> dict[str, int]:
    return {
        node.node.name: int(node.adapter_response.get("rows_affected", 0) or 0)
        for node in result.result.results
        if node.node.resource_type in ("model", "snapshot", "seed")
    }


def _nodes(result) -> dict[str, dict]:
    """Per kind of node (model, test, seed, snapshot): how many ran and their summed seconds."""
    kinds: dict[str, dict] = {}
    for node in result.result.results:
        kind = kinds.setdefault(str(node.node.resource_type), {"count": 0, "s": 0.0})
        kind["count"] += 1
        kind["s"] += node.execution_time
    return {name: {"count": k["count"], "s": round(k["s"], 1)} for name, k in sorted(kinds.items())}


def _slowest(result, top: int = 10) -> list[list]:
    """The ``top`` nodes by execution time: [name, seconds], slowest first."""
    timed = sorted(result.result.results, key=lambda node: node.execution_time, reverse=True)
    return [[node.node.name, round(node.execution_time, 2)] for node in timed[:top]]


def bench(customers: int, work: Path, days: int = 90) -> dict:
    from crm.feeds import load_registry
    from crm.generator import generate
    from crm.ingest import load_file
    from crm.settings import get_settings
    from crm.transform import build
    from crm.warehouse import role_url, scratch_database

    settings = get_settings()
    generate(customers=customers, start=START, days=days, seed=5, out=work / "landing", truth=work / "truth")
    registry = load_registry()
    with scratch_database("crm_bench_dbt", settings) as url:
        started = time.perf_counter()
        with psycopg.connect(role_url("crm_loader", settings, base_url=url)) as conn:
            for d in range(days):
                day = START + dt.timedelta(days=d)
                for feed in registry.load_order():
                    load_file(
                        conn,
                        feed,
                        day,
                        work / "landing" / feed.name / day.isoformat() / feed.file,
                        registry=registry,
                    )
        load_s = time.perf_counter() - started
        before_last = START + dt.timedelta(days=days - 2)
        last = START + dt.timedelta(days=days - 1)
        t0 = time.perf_counter()
        full = build(before_last, full_refresh=True, settings=settings, base_url=url)
        full_s = time.perf_counter() - t0
        # The night between two daily runs: autovacuum has vacuumed and analyzed what the full
        # refresh wrote (left running, it competes with the timed run for the same 2 cores).
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("vacuum analyze")
        t0 = time.perf_counter()
        incremental = build(last, settings=settings, base_url=url)
        inc_s = time.perf_counter() - t0
    full_rows, inc_rows = _rows(full), _rows(incremental)
    facts = ("fct_daily_balances", "fct_transactions", "fct_interactions")
    return {
        "customers": customers,
        "days": days,
        "ingest_all_days_s": round(load_s, 1),
        "full_refresh_s": round(full_s, 1),
        "one_day_incremental_s": round(inc_s, 1),
        "incremental_vs_full_time": round(inc_s / full_s, 3),
        "nodes_full_refresh": _nodes(full),
        "nodes_one_day": _nodes(incremental),
        "slowest_full_refresh": _slowest(full),
        "slowest_one_day": _slowest(incremental),
        "fact_rows_full_refresh": sum(full_rows.get(f, 0) for f in facts),
        "fact_rows_one_day": sum(inc_rows.get(f, 0) for f in facts),
        "incremental_vs_full_fact_rows": round(
            sum(inc_rows.get(f, 0) for f in facts) / max(sum(full_rows.get(f, 0) for f in facts), 1), 4
        ),
    }


def _copy_database(url: str, source: str, name: str) -> str:
    """A copy of database ``source`` (CREATE DATABASE ... TEMPLATE) named ``name``; its URL."""
    from crm.warehouse import with_database

    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()"
            " and backend_type = 'client backend'",
            (source,),
        )
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}" template "{source}"')
    return with_database(url, name)


def _drop_database(url: str, name: str) -> None:
    from crm.warehouse import with_database

    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def _dag_task_seconds(settings, dag_id: str) -> dict[str, float]:
    """Seconds of each task of ``dag_id``'s latest run, from Airflow's metadata database."""
    import sqlite3

    with sqlite3.connect(settings.airflow_home / "airflow.db") as airflow_db:
        rows = airflow_db.execute(
            "select task_id, start_date, end_date from task_instance where dag_id = ? and run_id ="
            " (select run_id from dag_run where dag_id = ? order by id desc limit 1)",
            (dag_id, dag_id),
        ).fetchall()
    parse = dt.datetime.fromisoformat
    return {
        task: round((parse(end) - parse(start)).total_seconds(), 1)
        for task, start, end in rows
        if start and end
    }


def bench_dag_stage(customers: int = 2000, work: Path | None = None, days: int = 3, repeats: int = 2) -> dict:
    """Plain ``crm dbt build --date D`` versus crm_transform's dbt stage for the same day D.

    The bank's first ``days - 1`` days are loaded and fully built, day D (the last) is
    loaded; each run gets a copy of that warehouse, so every run starts from the same state
    on the same server (``repeats`` runs of each, alternating which goes first): (1) ``crm dbt build --date D`` (a process of its own, as typed by
    hand), (2) ``airflow dags test crm_transform D`` (``crm.orchestrate.run_dag``, as ``crm
    run`` runs it). The stage is the DAG's dbt tasks (``dbt_build``, ``mark_reprocessed``)
    by Airflow's start and end times; the whole DAG run (Airflow's start-up and parse,
    ``plan_run``) is reported beside it.
    """
    import os
    import statistics
    import subprocess
    import sys
    import tempfile
    import uuid

    from crm.feeds import load_registry
    from crm.generator import generate
    from crm.ingest import load_file
    from crm.orchestrate import run_dag
    from crm.settings import environment, get_settings
    from crm.transform import ensure_manifest, run_dbt
    from crm.warehouse import ensure_ready, role_url, scratch_database

    settings = get_settings()
    ensure_ready(settings)
    work = work or Path(tempfile.mkdtemp(prefix="crm-bench-dag-"))
    generate(customers=customers, start=START, days=days, seed=5, out=work / "landing", truth=work / "truth")
    registry = load_registry()
    last = START + dt.timedelta(days=days - 1)
    suffix = uuid.uuid4().hex[:8]
    out: dict = {"customers": customers, "days": days, "day": last.isoformat()}
    with scratch_database(f"crm_bench_stage_{suffix}", settings) as url:
        with psycopg.connect(role_url("crm_loader", settings, base_url=url)) as conn:
            for d in range(days):
                day = START + dt.timedelta(days=d)
                if d == days - 1:  # the first days built, as the nights before D left them
                    # (setup, not timed; unit tests are CI's, not the bench's)
                    run_dbt(
                        ["build", "--full-refresh", "--exclude-resource-type", "unit_test"],
                        settings,
                        url,
                        extra_env={"CRM_RUN_DATE": (day - dt.timedelta(days=1)).isoformat()},
                    )
                for feed in registry.load_order():
                    path = work / "landing" / feed.name / day.isoformat() / feed.file
                    load_file(conn, feed, day, path, registry=registry)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("vacuum analyze")
        source = url.rsplit("/", 1)[-1].split("?")[0]
        names: list[str] = []
        runs: list[dict] = []
        try:
            # dbt artefacts of the bench's own (a developer's or another worker's dbt may be
            # rewriting dbt_project/target meanwhile); WAREHOUSE_URL is restored afterwards.
            overrides = {
                "CRM_DBT_TARGET_DIR": str(work / "dbt-target"),
                "WAREHOUSE_URL": os.environ.get("WAREHOUSE_URL"),
            }
            with environment(overrides):
                ensure_manifest(get_settings())
                exe = Path(sys.executable).with_name("crm")
                for round_ in range(repeats):
                    # Alternate which runs first: other processes sharing the cores weigh on both.
                    for kind in ("plain", "dag") if round_ % 2 == 0 else ("dag", "plain"):
                        names.append(f"crm_bench_{kind}_{suffix}_{round_}")
                        copy = _copy_database(url, source, names[-1])
                        if kind == "plain":
                            t0 = time.perf_counter()
                            subprocess.run(
                                [str(exe), "dbt", "build", "--date", last.isoformat()],
                                env={**os.environ, "WAREHOUSE_URL": copy},
                                check=True,
                                stdout=subprocess.DEVNULL,
                            )
                            runs.append({"kind": kind, "s": round(time.perf_counter() - t0, 1)})
                            continue
                        os.environ["WAREHOUSE_URL"] = copy
                        get_settings.cache_clear()
                        outcome = run_dag("crm_transform", last, get_settings())
                        if not outcome.ok:
                            raise RuntimeError(outcome.failure_excerpt())
                        tasks = _dag_task_seconds(get_settings(), "crm_transform")
                        stage = tasks["dbt_build"] + tasks["mark_reprocessed"]
                        runs.append(
                            {
                                "kind": kind,
                                "s": round(stage, 1),
                                "tasks": tasks,
                                "dag_run_s": round(outcome.seconds, 1),
                            }
                        )
        finally:
            for name in names:
                _drop_database(url, name)
    plain = sorted(r["s"] for r in runs if r["kind"] == "plain")
    stage = sorted(r["s"] for r in runs if r["kind"] == "dag")
    dag_run = sorted(r["dag_run_s"] for r in runs if r["kind"] == "dag")
    out |= {
        "plain_dbt_build_s": plain,
        "dag_dbt_stage_s": stage,
        "dag_run_s": dag_run,
        "stage_vs_plain_best": round(stage[0] / plain[0], 2),
        "stage_vs_plain_median": round(statistics.median(stage) / statistics.median(plain), 2),
        "dag_run_vs_plain_best": round(dag_run[0] / plain[0], 2),
        "runs": runs,
    }
    return out


if __name__ == "__main__":  # python -m crm.transform.bench [customers] [days] [repeats]
    import json
    import sys

    args = list(map(int, sys.argv[1:4])) + [2000, 3, 2][len(sys.argv[1:4]) :]
    print(json.dumps(bench_dag_stage(args[0], None, args[1], args[2]), indent=2))
