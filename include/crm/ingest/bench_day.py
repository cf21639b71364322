"""``make bench``'s ingest section: a day's load, feed by feed, against a plain ``COPY`` of
the same files (the machine's limit), the loader's floor, its memory on one file, and a day
with bad rows (the row-by-row path). Run by ``crm.bench``; each stage owns its bench.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import psycopg

from crm.memory import peak_rss_mib
from crm.settings import get_settings

START = dt.date(2026, 1, 1)


def bench_ingest(customers: int, work: Path) -> dict[str, Any]:
    """Loader rows/s per feed next to a plain COPY of the same file (the machine's limit)."""
    from crm.feeds import load_registry
    from crm.generator import generate
    from crm.ingest import load_file
    from crm.warehouse import role_url, scratch_database

    settings = get_settings()
    landing, truth = work / "landing", work / "truth"
    generate(customers=customers, start=START, days=1, seed=7, out=landing, truth=truth)
    registry = load_registry()
    results: dict[str, Any] = {}
    with scratch_database("crm_bench", settings) as url:
        with psycopg.connect(role_url("crm_loader", settings, base_url=url)) as conn:
            for feed in registry.load_order():
                path = landing / feed.name / START.isoformat() / feed.file
                if not path.exists():
                    continue
                started = time.perf_counter()
                result = load_file(conn, feed, START, path, registry=registry)
                seconds = time.perf_counter() - started
                results[feed.name] = {
                    "method": result.method,  # copy: clean-file path; rows: row by row
                    "rows": result.rows_in_file,
                    "mib": round(path.stat().st_size / 2**20, 1),
                    "loader_s": round(seconds, 3),
                    "loader_rows_s": round(result.rows_in_file / seconds) if seconds else None,
                }
        with psycopg.connect(url, autocommit=True) as conn:
            for feed in registry.load_order():
                if feed.name not in results:
                    continue
                path = landing / feed.name / START.isoformat() / feed.file
                if feed.format == "csv":
                    cols = ", ".join(f'"{c}" text' for c in feed.column_names)
                    options = f"format csv, header true, delimiter '{feed.delimiter}'"
                else:  # JSON Lines: each line as one text value (no quote or delimiter byte occurs)
                    cols = "line text"
                    options = "format csv, quote e'\\x01', delimiter e'\\x02'"
                seconds = _timed_copy(conn, path, cols, options)
                entry = results[feed.name]
                entry["plain_copy_s"] = round(seconds, 3)
                entry["plain_copy_rows_s"] = round(entry["rows"] / seconds) if seconds else None
                entry["loader_vs_copy"] = round(seconds / entry["loader_s"], 2) if entry["loader_s"] else None
                if feed.format == "csv":
                    # The same COPY into the raw table's column types (no constraints, no
                    # index): what parsing into types costs on its own. JSON Lines have no
                    # typed COPY.
                    with open(path, encoding=feed.encoding) as fh:
                        header = fh.readline().strip().split(feed.delimiter)
                    typed_cols = ", ".join(f'"{h}" {feed.column(h).pg_type}' for h in header)
                    typed = _timed_copy(conn, path, typed_cols, options)
                    entry["typed_copy_s"] = round(typed, 3)
                    entry["loader_vs_typed_copy"] = (
                        round(typed / entry["loader_s"], 2) if entry["loader_s"] else None
                    )
                else:
                    typed = _timed_jsonl_typing(conn, feed, path)
                entry["floor_s"] = round(typed + _timed_checks(conn, feed, registry, path), 3)
        memory = _bench_loader_memory(role_url("crm_loader", settings, base_url=url), landing, work)
    faulty = _bench_faulty_day(customers, work)
    floor_s = sum(r["floor_s"] for r in results.values())
    total_rows = sum(r["rows"] for r in results.values())
    total_s = sum(r["loader_s"] for r in results.values())
    copy_feeds = [r for r in results.values() if "plain_copy_s" in r]
    csv_feeds = [r for name, r in results.items() if registry.feed(name).format == "csv"]
    return {
        "customers": customers,
        "feeds": results,
        "total_rows": total_rows,
        "total_loader_s": round(total_s, 2),
        "loader_rows_s": round(total_rows / total_s) if total_s else None,
        # Seconds of plain COPY / seconds of the loader, summed over the feeds (the target: >= 0.5).
        "loader_vs_copy_all_feeds": round(
            sum(r["plain_copy_s"] for r in copy_feeds) / sum(r["loader_s"] for r in copy_feeds), 2
        ),
        "loader_vs_copy_csv_feeds": round(
            sum(r["plain_copy_s"] for r in csv_feeds) / sum(r["loader_s"] for r in csv_feeds), 2
        ),
        # The required work, each part alone at its fastest (typing, SHA-256, key
        # and reference checks; no audit, swap, statistics or line numbers): what no
        # loader can beat on this machine, next to the plain COPY.
        "floor_s": round(floor_s, 2),
        "floor_vs_copy_all_feeds": round(sum(r["plain_copy_s"] for r in copy_feeds) / floor_s, 2),
        "loader_vs_floor": round(floor_s / total_s, 2),
        # Against COPY into typed columns: the loader's own overhead (checks, line numbers,
        # key and reference query, partition swap, audit), typing excluded.
        "loader_vs_typed_copy_csv_feeds": round(
            sum(r["typed_copy_s"] for r in csv_feeds) / sum(r["loader_s"] for r in csv_feeds), 2
        ),
        "faulty_day": faulty,
        "loader_memory": memory,
    }


def load_and_measure(url: str, path: str, day: str, clean: str) -> dict[str, Any]:
    """Load ``path`` as core_customers for ``day`` (clean path if ``clean == "1"``) and
    report rows, path, seconds and this process's peak RSS. Run in a fresh process."""
    from crm.feeds import load_registry
    from crm.ingest import load_file

    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        result = load_file(
            conn,
            load_registry().feed("core_customers"),
            dt.date.fromisoformat(day),
            Path(path),
            force=True,
            clean_copy=clean == "1",
        )
        seconds = time.perf_counter() - started
    return {
        "rows": result.rows_loaded,
        "method": result.method,
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak_rss_mib()),
    }


def _bench_loader_memory(loader_url: str, landing: Path, work: Path) -> dict[str, Any]:
    """Peak RSS of a fresh process loading the customers file, and a file 10 times its size
    (the same rows under 10 id ranges), by each path: bounded memory shows as equal peaks."""
    import subprocess
    import sys

    small = landing / "core_customers" / START.isoformat() / "customers.csv"
    big = work / "customers_x10.csv"
    with open(small, "rb") as src, open(big, "wb") as out:
        header, body = src.readline(), b"\n" + src.read()
        out.write(header)
        for k in range(10):  # C0xxxxxxxx -> C<k>xxxxxxxx: line-initial ids only (the key)
            out.write(body.replace(b"\nC0", b"\nC%d" % k)[1:])
    report: dict[str, Any] = {"big_file_mib": round(big.stat().st_size / 2**20)}
    for name, path in (("file", small), ("file_x10", big)):
        for path_name, clean in (("clean", "1"), ("rows", "0")):
            code = "import json, sys; from crm.ingest.bench_day import load_and_measure as m; print(json.dumps(m(*sys.argv[1:])))"
            proc = subprocess.run(
                [sys.executable, "-c", code, loader_url, str(path), START.isoformat(), clean],
                capture_output=True,
                text=True,
                check=True,
            )
            report[f"{name}_{path_name}"] = json.loads(proc.stdout.strip().splitlines()[-1])
    big.unlink()
    return report


def _timed_copy(conn: psycopg.Connection, path: Path, columns: str, options: str) -> float:
    """Seconds of one plain COPY of ``path`` into a new table of ``columns`` (rolled back).

    The table is created in the COPY's transaction, as the loader's new partition is: on
    a server with ``wal_level = minimal`` (the embedded one) neither writes WAL for it.
    """
    with conn.transaction(force_rollback=True):
        conn.execute(f"create table public.plain_copy ({columns})")
        started = time.perf_counter()
        with (
            conn.cursor().copy(f"copy public.plain_copy from stdin ({options})") as copy,
            open(path, "rb") as fh,
        ):
            while block := fh.read(1 << 20):
                copy.write(block)
        return time.perf_counter() - started


def _timed_jsonl_typing(conn: psycopg.Connection, feed: Any, path: Path) -> float:
    """Seconds to parse a JSON Lines file into the raw table's column types at PostgreSQL's
    fastest: one ``COPY`` into jsonb, one ``jsonb_to_record`` into typed columns."""
    columns = ", ".join(f'"{c.name}" {c.pg_type}' for c in feed.columns)
    started = time.perf_counter()
    with conn.transaction(force_rollback=True):
        conn.execute("create temp table floor_doc (doc jsonb)")
        with (
            conn.cursor().copy(
                "copy floor_doc from stdin (format csv, quote e'\\x01', delimiter e'\\x02')"
            ) as copy,
            open(path, "rb") as fh,
        ):
            while block := fh.read(1 << 20):
                copy.write(block)
        conn.execute(
            f"create temp table floor_typed as select r.* from floor_doc, jsonb_to_record(doc) r({columns})"
        )
    return time.perf_counter() - started


def _timed_checks(conn: psycopg.Connection, feed: Any, registry: Any, path: Path) -> float:
    """Seconds of the checks every load must make: the file's SHA-256, and the loader's own
    duplicate-key and reference query, run on the day's loaded partition."""
    import hashlib

    from psycopg import sql

    from crm.ingest.clean_path import key_and_reference_tests
    from crm.ingest.loader import LOAD_WORK_MEM
    from crm.ingest.tables import partition_name

    started = time.perf_counter()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    partition = sql.Identifier("raw", partition_name(feed, START))
    tests = key_and_reference_tests(feed, registry, partition, START)
    with conn.transaction():
        conn.execute(f"set local work_mem = '{LOAD_WORK_MEM}'")  # as the loader's
        conn.execute(sql.SQL("select {}").format(sql.SQL(", ").join(tests))).fetchone()
    return time.perf_counter() - started


FAULTY_DAY = "missing_key=0.0005,bad_date=0.0005,duplicate_key=0.0005,unknown_customer=0.0005,bad_json=0.0005"


def _bench_faulty_day(customers: int, work: Path) -> dict[str, Any]:
    """The same day with a few bad rows in the leaf feeds: those files fall back from the
    clean path to the row-by-row path (the cost of a dirty file, quarantine included)."""
    from crm.feeds import load_registry
    from crm.generator import generate
    from crm.ingest import load_file
    from crm.warehouse import role_url, scratch_database

    settings = get_settings()
    landing = work / "landing_faulty"
    generate(
        customers=customers,
        start=START,
        days=1,
        seed=7,
        out=landing,
        truth=work / "truth_faulty",
        faults=FAULTY_DAY,
    )
    registry = load_registry()
    rows = quarantined = 0
    methods: dict[str, int] = {}
    with (
        scratch_database("crm_bench_faulty", settings) as url,
        psycopg.connect(role_url("crm_loader", settings, base_url=url)) as conn,
    ):
        started = time.perf_counter()
        for feed in registry.load_order():
            path = landing / feed.name / START.isoformat() / feed.file
            if path.exists():
                result = load_file(conn, feed, START, path, registry=registry)
                rows += result.rows_in_file
                quarantined += result.rows_quarantined
                methods[result.method] = methods.get(result.method, 0) + 1
        seconds = time.perf_counter() - started
    return {
        "faults": FAULTY_DAY,
        "rows": rows,
        "quarantined": quarantined,
        "files_by_method": methods,
        "loader_s": round(seconds, 2),
        "loader_rows_s": round(rows / seconds),
    }
