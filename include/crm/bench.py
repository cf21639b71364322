"""``make bench``: throughput and memory of each stage, measured on this machine.

Writes ``var/bench/results.json`` and prints a table. Each section measures the real
component on generated data; nothing here is asserted, it is reported.

    python -m crm.bench [--customers 100000] [--sections generator,...,dag_stage] [--sections daily_run] [--sections backfill] [--sections ml]
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

from crm.ingest.bench_day import bench_ingest
from crm.memory import peak_rss_mib
from crm.quality.bench import bench_gates
from crm.settings import get_settings


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


def bench_backfill(
    customers: int, work: Path, daily_customers: int = 2000, backfill_days: int = 3, backfill_at_once: int = 1
) -> dict[str, Any]:
    """Airflow's own backfill of the daily DAGs (the real scheduler, REST API) against the same
    days run one at a time, content compared (crm.bench_backfill)."""
    from crm.bench_backfill import bench_backfill as measure

    return measure(customers=daily_customers, work=work, days=backfill_days, at_once=backfill_at_once)


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
    "backfill": bench_backfill,
    "ml": bench_ml,
}


# Sections run only when named: the end-to-end daily run (minutes per simulated day), Airflow's
# backfill of it (starts the real Airflow) and the model at scale (reads the warehouse's
# labelled history).
ON_REQUEST = ("daily_run", "backfill", "ml")


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
        "--backfill-days", type=int, default=3, help="backfill: days (bank size: --daily-customers)"
    )
    parser.add_argument(
        "--backfill-at-once",
        type=int,
        default=1,
        help="backfill: crm_ingest runs at once (more than 1: days queue up behind crm_transform)",
    )
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
            "backfill": {
                "daily_customers": args.daily_customers,
                "backfill_days": args.backfill_days,
                "backfill_at_once": args.backfill_at_once,
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
    out.write_text(json.dumps(merged(out, report), indent=2))
    shutil.rmtree(work, ignore_errors=True)
    print(f"results written to {out}")
    return 0


def merged(path: Path, report: dict[str, Any]) -> dict[str, Any]:
    """``report`` over the sections an earlier run left in ``path``: a run of one section
    replaces that section's figures and keeps the others, each with the time it was taken."""
    sections = {k: v for k, v in report.items() if isinstance(v, dict) and k != "machine"}
    for figures in sections.values():
        figures.setdefault("when", report["when"])
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        earlier = {}
    kept = {k: v for k, v in earlier.items() if isinstance(v, dict) and k != "machine" and k not in sections}
    for figures in kept.values():
        figures.setdefault("when", earlier.get("when"))
    return {**kept, **report}


if __name__ == "__main__":
    raise SystemExit(main())
