"""Generator throughput and peak memory (called by ``make bench``)."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

from crm.memory import peak_rss_mib


def bench(customers: int, days: int, out: Path) -> dict:
    from crm.generator import generate

    started = time.perf_counter()
    result = generate(
        customers=customers,
        start=dt.date(2026, 1, 1),
        days=days,
        seed=1,
        out=out / "landing",
        truth=out / "truth",
    )
    seconds = time.perf_counter() - started
    rows = sum(result.rows.values())
    size = sum(p.stat().st_size for p in (out / "landing").rglob("*") if p.is_file())
    shutil.rmtree(out, ignore_errors=True)
    return {
        "customers": customers,
        "days": days,
        "rows": rows,
        "mib_written": round(size / 2**20, 1),
        "seconds": round(seconds, 1),
        "rows_per_s": round(rows / seconds),
        "customer_days_per_s": round(customers * days / seconds),
        "peak_rss_mib": round(peak_rss_mib()),
    }
