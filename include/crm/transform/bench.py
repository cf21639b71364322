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
