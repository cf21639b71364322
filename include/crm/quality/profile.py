"""The raw gate: each feed's day measured in one SQL pass, judged by GX from a profile table.

One ``select`` per feed over the day's partition computes every figure its suite declares
(``raw.profile``'s meta, written from the registry by ``crm dq suites``): the row count,
distinct keys, non-null shares of optional columns, medians of the main amounts, how many
days the latest event lies before the business day, and an order-free fingerprint of the
day's content (the sum of a 64-bit hash of each row's registered columns). Each figure gets
its band from the feed's own past (``crm.quality.history``), and the figures go to
``dq.raw_profiles`` with it; the GX suite ``raw.profile`` then judges that table, one
expectation per severity. Each figure is also a row of ``dq.expectation_results``, under the
check name the fault ledger uses, so a feed's history and a fault's trace read as before.

A stale repeat is a day whose fingerprint equals the day before's (stored in its profile;
computed from the raw partition when that day was never profiled). A day with fewer than
``history.MIN_SAMPLE`` rows is judged by its volume alone.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from psycopg import Connection, sql

from crm.feeds import Feed, Registry
from crm.quality import history
from crm.quality.suites import FRESHNESS_LAG_DAYS

VALUE_KINDS = {"distinct_count", "non_null_share", "median"}  # not judged on a thin day
WORKERS = 2  # connections profiling feeds at once


def _ident(name: str) -> sql.Composable:
    return sql.Identifier(name)


def _fingerprint(feed: Feed) -> sql.Composable:
    cols = sql.SQL(", ").join(map(_ident, feed.column_names))
    return sql.SQL("sum(hash_record_extended(row({}), 0)::numeric)::text").format(cols)


def _expression(feed: Feed, figure: dict[str, Any]) -> sql.Composable:
    column = _ident(figure["column"]) if figure.get("column") else None
    kind = figure["kind"]
    if kind == "row_count":
        return sql.SQL("count(*)::float8")
    if kind == "distinct_count":
        return sql.SQL("count(distinct {})::float8").format(column)
    if kind == "non_null_share":
        return sql.SQL("avg(({} is not null)::int)::float8").format(column)
    if kind == "median":
        return sql.SQL("percentile_cont(0.5) within group (order by {}::float8)").format(column)
    if kind == "freshness_lag_days":
        events = [
            c.name for c in feed.columns if c.not_future and c.type in ("date", "timestamp", "timestamptz")
        ]
        latest = sql.SQL("greatest({})").format(
            sql.SQL(", ").join(sql.SQL("{}::date").format(_ident(e)) for e in events)
        )
        return sql.SQL("(%(day)s::date - max({}))::float8").format(latest)
    if kind == "stale_repeat":
        return _fingerprint(feed)
    raise ValueError(f"{feed.name}: unknown figure kind {kind!r}")


def measure(conn: Connection, feed: Feed, figures: list[dict[str, Any]], day: dt.date) -> list[Any]:
    """Every figure of ``feed`` on ``day``, in the order given, from one pass over its partition."""
    query = sql.SQL("select {} from raw.{} where _business_date = %(day)s").format(
        sql.SQL(", ").join(_expression(feed, f) for f in figures), _ident(feed.name)
    )
    return list(conn.execute(query, {"day": day}).fetchone())


def _previous_fingerprint(conn: Connection, feed: Feed, day: dt.date) -> str | None:
    before = day - dt.timedelta(days=1)
    row = conn.execute(
        "select fingerprint from dq.raw_profiles where business_date = %s and feed = %s"
        " and check_name = 'raw.stale_repeat'",
        (before, feed.name),
    ).fetchone()
    if row is not None:
        return row[0]
    query = sql.SQL("select {} from raw.{} where _business_date = %s").format(
        _fingerprint(feed), _ident(feed.name)
    )
    return conn.execute(query, (before,)).fetchone()[0]


def judge(
    conn: Connection,
    feed: Feed,
    figures: list[dict[str, Any]],
    values: list[Any],
    day: dt.date,
    past: dict[tuple[str, str], list[float]],
) -> list[dict[str, Any]]:
    """One profile row per figure: observed value, band, whether it is judged."""
    volume = next(v for f, v in zip(figures, values, strict=True) if f["kind"] == "row_count")
    rows = []
    for figure, value in zip(figures, values, strict=True):
        row = {
            "business_date": day,
            "feed": feed.name,
            "check_name": figure["name"],
            "kind": figure["kind"],
            "column_name": figure.get("column"),
            "severity": figure["severity"],
            "fingerprint": None,
        }
        if figure["kind"] == "stale_repeat":
            row["fingerprint"] = value
            repeat = volume > 0 and value is not None and value == _previous_fingerprint(conn, feed, day)
            value, band = float(repeat), {"min": 0.0, "max": 0.0}
        elif figure["kind"] == "freshness_lag_days":
            band = {"min": -1e9, "max": float(FRESHNESS_LAG_DAYS)}
        else:
            band = history.band(past.get((feed.name, figure["name"]), []), figure["kind"])
        if figure["kind"] in VALUE_KINDS and volume < history.MIN_SAMPLE:
            value = None  # a median of 5 rows is chance: not judged, not kept as history
            band = {**band, "not_judged": f"{volume:.0f} rows (< {history.MIN_SAMPLE})"}
        row |= {
            "observed": value,
            "min_value": band["min"],
            "max_value": band["max"],
            "judged": value is not None,
            "band": band,
        }
        rows.append(row)
    return rows


COLUMNS = (
    "business_date",
    "feed",
    "check_name",
    "kind",
    "column_name",
    "severity",
    "observed",
    "min_value",
    "max_value",
    "judged",
    "band",
    "fingerprint",
)


def store(conn: Connection, day: dt.date, feeds: list[str], rows: list[dict[str, Any]]) -> dict[tuple, bool]:
    """Replace the day's figures of ``feeds``; returns ``passed`` of each (feed, check) as the
    table defines it (the same column GX judges)."""
    from psycopg.types.json import Jsonb

    with conn.transaction():
        conn.execute("delete from dq.raw_profiles where business_date = %s and feed = any(%s)", (day, feeds))
        with conn.cursor().copy(f"copy dq.raw_profiles ({', '.join(COLUMNS)}) from stdin") as copy:
            for row in rows:
                copy.write_row([Jsonb(row[c]) if c == "band" else row[c] for c in COLUMNS])
    return {
        (feed, check): passed
        for feed, check, passed in conn.execute(
            "select feed, check_name, passed from dq.raw_profiles where business_date = %s and feed = any(%s)",
            (day, feeds),
        )
    }


def _buckets(feeds: list[str], past: dict[tuple[str, str], list[float]], n: int) -> list[list[str]]:
    """``feeds`` in ``n`` groups of about equal rows (largest first, by their last volume)."""
    size = {f: (past.get((f, "raw.volume")) or [0.0])[0] for f in feeds}
    groups: list[list[str]] = [[] for _ in range(n)]
    load = [0.0] * n
    for feed in sorted(feeds, key=size.__getitem__, reverse=True):
        i = load.index(min(load))
        groups[i].append(feed)
        load[i] += size[feed] + 1
    return [g for g in groups if g]


def profile_day(
    conn: Connection,
    connect: Callable[[], Connection],
    registry: Registry,
    figures: dict[str, list[dict[str, Any]]],
    feeds: list[str],
    day: dt.date,
) -> tuple[list[dict[str, Any]], dict[str, float], dict[tuple, bool]]:
    """Measure, judge and store ``feeds`` on ``day``: (profile rows, seconds per feed, passed).

    The feeds are measured on ``WORKERS`` connections at once (``connect`` opens one): each
    profile is one CPU-bound query, and PostgreSQL runs each connection on its own core."""
    past = history.past_figures(conn, feeds, figures, day)

    def measure_group(group: list[str]) -> list[tuple[str, list[dict[str, Any]], float]]:
        out = []
        with connect() as own:
            for name in group:
                clock = time.perf_counter()
                feed = registry.feed(name)
                values = measure(own, feed, figures[name], day)
                out.append(
                    (name, judge(own, feed, figures[name], values, day, past), time.perf_counter() - clock)
                )
        return out

    with ThreadPoolExecutor(WORKERS) as pool:
        done = [r for group in pool.map(measure_group, _buckets(feeds, past, WORKERS)) for r in group]
    by_feed = {name: (rows, seconds) for name, rows, seconds in done}
    rows = [r for name in feeds for r in by_feed[name][0]]
    return rows, {name: by_feed[name][1] for name in feeds}, store(conn, day, feeds, rows)
