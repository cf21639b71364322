"""``make bench``'s gates section: the quality gates' cost per business day against its load.

Each stage owns its bench (crm.generator.bench, crm.transform.bench); crm.bench lists them.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from crm.settings import get_settings

START = dt.date(2026, 1, 1)

GATE_DAYS = 7  # the raw gate judges volumes, null rates and medians after 5 prior observed days
TARGET_GATES_VS_LOAD = 0.25


def bench_gates(customers: int, work: Path, days: int = GATE_DAYS) -> dict[str, Any]:
    """The quality gates' cost on one business day, as a share of that day's load.

    A fresh database; ``days`` days of a ``customers`` bank loaded by the real loader, the
    raw gate run on each earlier day (so its history is past warm-up, as in production);
    then on the last day the raw gate, the recon gate and the Data Docs build, each timed
    alone, against the last day's load. The GX import and context creation, paid once by
    each fresh process (each Airflow task), is measured in a process of its own.
    """
    from crm.generator import generate
    from crm.ingest.service import ingest_day
    from crm.quality.gate import build_docs, context, run_gate
    from crm.warehouse import scratch_database

    base = get_settings()
    landing, home = work / "gates_landing", work / "gates_home"
    started = time.perf_counter()
    generate(customers=customers, start=START, days=days, seed=7, out=landing, truth=work / "gates_truth")
    generate_s = time.perf_counter() - started
    last = START + dt.timedelta(days=days - 1)
    with scratch_database("crm_bench_gates", base) as url:
        # The scratch database and the bench's landing; GX results and Data Docs in the work
        # folder (not var/gx); the roles' passwords of this server.
        passwords = {
            f"{role.removeprefix('crm_')}_password": base.role_password(role)
            for role in ("crm_loader", "crm_transformer", "crm_ml", "crm_bi_reader")
        }
        settings = base.model_copy(
            update={"warehouse_url": url, "landing_dir": landing, "home": home, **passwords}
        )
        load_s: list[float] = []
        history_raw_s: list[float] = []
        rows: dict[str, int] = {}
        for d in range(days):
            day = START + dt.timedelta(days=d)
            clock = time.perf_counter()
            results, refused = ingest_day(day, landing=landing, settings=settings)
            load_s.append(time.perf_counter() - clock)
            if refused:
                raise RuntimeError(f"{day}: {len(refused)} files refused: {refused[0]}")
            if day != last:
                clock = time.perf_counter()
                run_gate("raw", day, settings=settings, docs=False)
                history_raw_s.append(time.perf_counter() - clock)
            else:
                rows = {r.feed: r.rows_in_file for r in results}
        clock = time.perf_counter()
        raw = run_gate("raw", last, settings=settings, docs=False)
        raw_s = time.perf_counter() - clock
        clock = time.perf_counter()
        recon = run_gate("recon", last, settings=settings, docs=False)
        recon_s = time.perf_counter() - clock
        clock = time.perf_counter()
        ctx = context("raw", settings=settings)
        context_s = time.perf_counter() - clock
        clock = time.perf_counter()
        docs_path = build_docs(ctx, settings)
        docs_s = time.perf_counter() - clock
        validations = (
            len(list((home / "gx" / "validations").rglob("*.json"))) if (home / "gx").exists() else 0
        )
        fresh = _gx_fresh_process(url)
    suites = sorted(raw.runs + recon.runs, key=lambda r: r.seconds, reverse=True)
    day_load_s = load_s[-1]
    report = {
        "customers": customers,
        "days": days,
        "generate_s": round(generate_s, 1),
        "rows_last_day": sum(rows.values()),
        "load_s": round(day_load_s, 2),
        "load_s_each_day": [round(s, 2) for s in load_s],
        "raw_gate_s": round(raw_s, 2),
        "recon_gate_s": round(recon_s, 2),
        "gates_vs_load": round((raw_s + recon_s) / day_load_s, 2) if day_load_s else None,
        "target_gates_vs_load": TARGET_GATES_VS_LOAD,
        "docs_s": round(docs_s, 2),
        "docs_validation_results": validations,
        "docs_index": str(Path(docs_path).relative_to(home)),
        # Context creation in this process (GX already imported), and in a fresh one.
        "context_s": round(context_s, 2),
        "gx_import_s_fresh_process": fresh["import_s"],
        "gx_context_s_fresh_process": fresh["context_s"],
        "history_raw_gate_s": [round(s, 2) for s in history_raw_s],
        "raw_gate_passed": raw.success,
        "recon_gate_passed": recon.success,
        # Failed or warned expectations of the timed day (a clean bank should have none).
        "alarms": [line.strip() for out in (raw, recon) for line in out.summary().splitlines()[1:-1]],
        # The suites' own seconds (GX validation, history, recording), the rest of a gate's
        # time being its context and, for recon, the reconciliation itself.
        "raw_suites_s": round(sum(r.seconds for r in raw.runs), 2),
        "recon_suites_s": round(sum(r.seconds for r in recon.runs), 2),
        "expectations": sum(len(r.outcomes) for r in raw.runs + recon.runs),
        "suites": len(suites),
        "slowest_suites": [
            {
                "suite": r.suite,
                "seconds": round(r.seconds, 2),
                "expectations": len(r.outcomes),
                "rows": rows.get(r.subject),
            }
            for r in suites[:5]
        ],
    }
    print(gates_table(report))
    return report


def _gx_fresh_process(url: str) -> dict[str, float]:
    """Seconds to import great_expectations, then to create the gates' context, in a new
    process: what each gate task pays before its first expectation."""
    import os
    import subprocess
    import sys

    code = (
        "import json, time; t = time.perf_counter(); import great_expectations; "
        "i = time.perf_counter() - t; from crm.quality.gate import context; "
        "t = time.perf_counter(); context('raw'); c = time.perf_counter() - t; "
        "print(json.dumps({'import_s': round(i, 2), 'context_s': round(c, 2)}))"
    )
    env = {**os.environ, "WAREHOUSE_URL": url}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def gates_table(report: dict[str, Any]) -> str:
    """The gates section as a small table (seconds on the last business day)."""
    ratio = report["gates_vs_load"]
    lines = [
        f"gates, {report['customers']:,} customers, day {report['days']} of {report['days']}"
        f" ({report['rows_last_day']:,} rows)",
        f"  {'load':<28}{report['load_s']:>8.2f} s",
        f"  {'raw gate':<28}{report['raw_gate_s']:>8.2f} s",
        f"  {'recon gate':<28}{report['recon_gate_s']:>8.2f} s",
        f"  {'(raw + recon) / load':<28}{ratio:>8.2f}   (target <= {report['target_gates_vs_load']:.2f})",
        f"  {'Data Docs build':<28}{report['docs_s']:>8.2f} s",
        f"  {'GX import (fresh process)':<28}{report['gx_import_s_fresh_process']:>8.2f} s",
        f"  {'GX context (fresh process)':<28}{report['gx_context_s_fresh_process']:>8.2f} s",
        "  slowest suites:",
    ]
    for s in report["slowest_suites"]:
        rows = f"{s['rows']:,} rows" if s["rows"] is not None else ""
        lines.append(
            f"    {s['suite']:<26}{s['seconds']:>8.2f} s  {s['expectations']:>3} expectations  {rows}"
        )
    return "\n".join(lines)
