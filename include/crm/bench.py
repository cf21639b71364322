"""``make bench``: throughput and memory of each stage, measured on this machine.

Writes ``var/bench/results.json`` and prints a table. Each section measures the real
component on generated data; nothing here is asserted, it is reported.

    python -m crm.bench [--customers 100000] [--sections generator,...,dag_stage] [--sections daily_run] [--sections ml]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import psycopg

from crm.memory import peak_rss_mib
from crm.quality.bench import bench_gates
from crm.settings import get_settings

START = dt.date(2026, 1, 1)


def bench_generator(customers: int, work: Path, big: int = 0) -> dict[str, Any]:
    """Throughput at the bench size, and peak memory at ``big`` customers x 1 day."""
    from crm.generator.bench import bench

    out = {"at_bench_size": bench(customers=customers, days=1, out=work / "gen")}
    if big:
        # A fresh process, so the peak RSS is the generator's alone.
        import subprocess
        import sys

        code = (
            "import json, pathlib; from crm.generator.bench import bench; "
            f"print(json.dumps(bench({big}, 1, pathlib.Path({str(work / 'genbig')!r}))))"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        out["at_scale"] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


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
            code = "import json, sys; from crm.bench import load_and_measure as m; print(json.dumps(m(*sys.argv[1:])))"
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


def bench_ingest_history(
    customers: int, work: Path, history_customers: int = 1000, history_days: int = 150
) -> dict[str, Any]:
    """A day's load early vs late in a long history (crm.ingest.bench): the ratio stays near
    1 unless some step of the load grows with the number of days in raw."""
    from crm.ingest.bench import bench_history_growth

    return bench_history_growth(history_customers, work / "history", history_days)


def bench_dbt(customers: int, work: Path, dbt_customers: int = 2000) -> dict[str, Any]:
    from crm.transform.bench import bench

    return bench(customers=dbt_customers, work=work / "dbt")


def bench_dags(customers: int, work: Path) -> dict[str, Any]:
    """Seconds Airflow takes to parse each DAG file (`airflow dags report`)."""
    import subprocess
    import sys

    from crm.airflow_env import airflow_environ, ensure_metadata_db
    from crm.transform import ensure_manifest

    ensure_manifest()
    ensure_metadata_db()
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "dags", "report", "--output", "json"],
        env=airflow_environ(),
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("[{")))

    def seconds(duration: str) -> float:  # "0:00:01.012797"
        h, m, s = duration.split(":")
        return round(int(h) * 3600 + int(m) * 60 + float(s), 3)

    return {
        row["file"]: {"parse_s": seconds(row["duration"]), "tasks": int(row["task_num"])} for row in report
    }


def bench_dag_stage(customers: int, work: Path, dag_customers: int = 20_000) -> dict[str, Any]:
    """crm_transform's dbt stage against a plain `crm dbt build --date D` of the same day, side
    by side on copies of one warehouse (crm.transform.bench.bench_dag_stage)."""
    from crm.transform.bench import bench_dag_stage as measure

    return measure(customers=dag_customers, work=work / "dag_stage")


def bench_daily_run(
    customers: int, work: Path, daily_customers: int = 2000, daily_days: int = 3, equivalence: bool = True
) -> dict[str, Any]:
    """The whole daily flow stage by stage with peak memory, and a range run against single
    days (crm.bench_daily)."""
    from crm.bench_daily import bench_daily_run as measure

    return measure(customers=daily_customers, work=work, days=daily_days, equivalence=equivalence)


def bench_ml(customers: int, work: Path, ml_rows: str = "100000,1000000") -> dict[str, Any]:
    """The churn model's training time, scoring throughput and peak memory at scale, on the
    warehouse's training frame replicated to each size (crm.ml.bench)."""
    from crm.ml.bench import bench_ml as measure

    return measure(work / "ml", sizes=tuple(int(n) for n in ml_rows.split(",")))


SECTIONS = {
    "generator": bench_generator,
    "ingest": bench_ingest,
    "ingest_history": bench_ingest_history,
    "dbt": bench_dbt,
    "dags": bench_dags,
    "gates": bench_gates,
    "dag_stage": bench_dag_stage,
    "daily_run": bench_daily_run,
    "ml": bench_ml,
}


# Sections run only when named: the end-to-end daily run (minutes per simulated day) and the
# model at scale (reads the warehouse's labelled history).
ON_REQUEST = ("daily_run", "ml")


def main(argv: list[str] | None = None) -> int:
    from crm.logs import setup_logging
    from crm.warehouse import ensure_ready

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument(
        "--sections",
        default=",".join(s for s in SECTIONS if s not in ON_REQUEST),
        help=f"comma list of {', '.join(SECTIONS)}; {', '.join(ON_REQUEST)} only when named (long; ml needs"
        " labelled history in the warehouse: make run or crm history first)",
    )
    parser.add_argument("--generator-customers", type=int, default=1_000_000, help="scale run (peak memory)")
    parser.add_argument(
        "--dbt-customers",
        type=int,
        default=100_000,
        help="bank size of the 90-day dbt bench: the ingest bench's bank (about 10 min; 20000: 3 min)",
    )
    parser.add_argument(
        "--history-customers", type=int, default=1000, help="bank size of the history-growth bench"
    )
    parser.add_argument("--history-days", type=int, default=150, help="days of the history-growth bench")
    parser.add_argument(
        "--dag-customers", type=int, default=20_000, help="bank size of the dbt-stage-in-Airflow bench"
    )
    parser.add_argument(
        "--daily-customers", type=int, default=2000, help="bank size of the end-to-end daily-run bench"
    )
    parser.add_argument("--daily-days", type=int, default=3, help="days of the end-to-end daily-run bench")
    parser.add_argument(
        "--no-equivalence",
        action="store_true",
        help="daily_run: skip the single-day runs compared with the range run (halves its time)",
    )
    parser.add_argument(
        "--ml-rows", default="100000,1000000", help="ml: training/scoring sizes (comma list of rows)"
    )
    args = parser.parse_args(argv)
    setup_logging()
    settings = get_settings()
    ensure_ready(settings)
    work = settings.home / "bench" / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    report: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
    }
    for name in args.sections.split(","):
        fn = SECTIONS[name.strip()]
        started = time.perf_counter()
        extra = {
            "generator": {"big": args.generator_customers},
            "dbt": {"dbt_customers": args.dbt_customers},
            "dag_stage": {"dag_customers": args.dag_customers},
            "ml": {"ml_rows": args.ml_rows},
            "daily_run": {
                "daily_customers": args.daily_customers,
                "daily_days": args.daily_days,
                "equivalence": not args.no_equivalence,
            },
            "ingest_history": {
                "history_customers": args.history_customers,
                "history_days": args.history_days,
            },
        }
        report[name] = fn(args.customers, work, **extra.get(name, {}))
        report[name]["wall_s"] = round(time.perf_counter() - started, 1)
        print(f"== {name}: {json.dumps(report[name], indent=1)}")
    report["peak_rss_mib_bench_process"] = round(peak_rss_mib())
    out = settings.home / "bench" / "results.json"
    out.write_text(json.dumps(report, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
