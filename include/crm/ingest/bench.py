"""History growth: does a day's load get slower as the warehouse holds more days?

Generates a bank of ``customers`` x ``days``, loads it day by day with the real loader
(``load_feed_day`` per feed, in load order, as ``crm_loader``: what ``ingest_day``, and
so ``crm history``, does), and reports each day's seconds. The ratio of the last days' mean to the
early days' mean is the number to watch: a load whose cost grows with the number of daily
partitions (a reference check that scans every day of ``raw.core_customers``, planning
over hundreds of partitions) shows a ratio well above 1.

    python -m crm.ingest.bench [--customers 1000] [--days 150]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crm.settings import Settings, get_settings

if TYPE_CHECKING:
    from crm.feeds import Registry

START = dt.date(2026, 1, 1)


def _load_day(day: dt.date, landing: Path, settings: Settings, registry: Registry) -> dict:
    """Every feed's file of ``day`` (as ``ingest_day``: load order, one connection per file):
    the day's seconds and each feed's."""
    from crm.ingest.service import load_feed_day

    feeds: dict[str, float] = {}
    started = time.perf_counter()
    for feed in registry.load_order():
        if not (landing / feed.name / day.isoformat() / feed.file).exists():
            continue
        t0 = time.perf_counter()
        load_feed_day(feed.name, day, landing=landing, settings=settings)
        feeds[feed.name] = round(time.perf_counter() - t0, 3)
    return {"s": round(time.perf_counter() - started, 3), "feeds": feeds}


def load_history(url: str, landing: Path, first: dt.date, days: int, settings: Settings) -> list[dict]:
    """Load ``days`` days from ``landing`` into the database at ``url`` (owner URL) as
    ``crm history`` does; per day: its seconds and each feed's seconds."""
    from crm.feeds import load_registry

    registry = load_registry()
    at = settings.model_copy(update={"warehouse_url": url})
    per_day = []
    for n in range(1, days + 1):
        day = first + dt.timedelta(days=n - 1)
        per_day.append({"day": n, **_load_day(day, landing, at, registry)})
    return per_day


def growth(per_day: list[dict], early: int = 10, window: int = 10) -> dict[str, Any]:
    """Median seconds of the ``window`` days around day ``early`` vs the last ``window`` days,
    and their ratio (medians: one day's time jumps with autovacuum and whatever else the
    machine runs; day 1, the full customer snapshot, is outside both windows)."""
    lo = max(1, early - window // 2)
    first = [d["s"] for d in per_day[lo : lo + window]]
    last = [d["s"] for d in per_day[-window:]]
    a, b = statistics.median(first), statistics.median(last)
    return {
        f"day_{early}_s": round(a, 3),
        f"day_{len(per_day)}_s": round(b, 3),
        "ratio": round(b / a, 2) if a else None,
        "total_s": round(sum(d["s"] for d in per_day), 1),
    }


def bench_history_growth(customers: int, work: Path, days: int = 150) -> dict[str, Any]:
    """Generate ``customers`` x ``days``, load it day by day into a scratch database; the
    per-day seconds (every 10th day kept in the report) and the day-10 vs last-day ratio."""
    from crm.generator import generate
    from crm.warehouse import scratch_database

    settings = get_settings()
    landing, truth = work / "history_landing", work / "history_truth"
    t0 = time.perf_counter()
    generate(customers=customers, start=START, days=days, seed=11, out=landing, truth=truth)
    generated = time.perf_counter() - t0
    with scratch_database("crm_bench_history", settings) as url:
        per_day = load_history(url, landing, START, days, settings)
    return {
        "customers": customers,
        "days": days,
        "generate_s": round(generated, 1),
        **growth(per_day),
        "every_10th_day_s": {d["day"]: d["s"] for d in per_day if d["day"] % 10 == 0},
        "last_day_feeds_s": per_day[-1]["feeds"],
    }


def main(argv: list[str] | None = None) -> int:
    from crm.warehouse import ensure_ready

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=150)
    args = parser.parse_args(argv)
    ensure_ready(get_settings())
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(bench_history_growth(args.customers, Path(tmp), args.days), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
