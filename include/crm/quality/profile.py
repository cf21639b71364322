"""The raw gate: each feed's day measured in one SQL pass, judged by GX from a profile table.

One ``select`` per feed over the day's partition computes every figure its suite declares
(``raw.profile``'s meta, written from the registry by ``crm dq suites``): the row count,
how many customers (accounts) the rows belong to, non-null shares of optional columns, the
typical magnitude of the main amounts, how many days the latest event lies before the
business day, and an order-free fingerprint of the
day's content (the sum of a 64-bit hash of each line as delivered). Each figure gets
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
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from psycopg import Connection, sql

from crm.feeds import Feed, Registry
from crm.quality import history, recon
from crm.quality.suites import FRESHNESS_LAG_DAYS

VALUE_KINDS = {"distinct_count", "non_null_share", "scale"}  # not judged on a thin day
WORKERS = 2  # connections profiling feeds at once


def _ident(name: str) -> sql.Composable:
    return sql.Identifier(name)


def _fingerprint(feed: Feed) -> sql.Composable:
    """The day's content, order-free: the sum of a 64-bit hash of each line as delivered (of the
    row's registered columns where the feed keeps no source lines: twice the cost). int8 sums
    are exact: the same lines give the same sum in any order."""
    if feed.source_line:
        return sql.SQL("sum(hashtextextended(_source_line, 0))::text")
    cols = sql.SQL(", ").join(map(_ident, feed.column_names))
    return sql.SQL("sum(hash_record_extended(row({}), 0))::text").format(cols)


def _expression(feed: Feed, figure: dict[str, Any]) -> sql.Composable:
    column = _ident(figure["column"]) if figure.get("column") else None
    kind = figure["kind"]
    if kind == "row_count":
        return sql.SQL("count(*)::float8")
    if kind == "distinct_count":
        if feed.key == (figure["column"],):
            # The loader quarantines a repeated key (DUPLICATE_KEY): the day's keys are distinct
            # by then, so they are counted without the sort a count(distinct) pays.
            return sql.SQL("count({})::float8").format(column)
        return sql.SQL("count(distinct {})::float8").format(column)
    if kind == "non_null_share":
        return sql.SQL("avg(({} is not null)::int)::float8").format(column)
    if kind == "scale":
        # exp(mean ln|x|) over the non-zero values: the geometric mean magnitude. A unit shift
        # (x100) moves it by exactly that factor on any scale; it needs no sort (a median of
        # 271,000 balances: 0.07 s of a 0.22 s profile, this 0.03 s), one huge value moves it
        # little, and it moves smoothly with a column's mix of a few fixed values, where a
        # median jumps between them (campaign contact costs of 0.02, 0.05, 0.30, 8 and 60:
        # median 0.05 or 0.30 by chance, a 6x "shift" on a clean day). The logs are summed
        # as integers (micro-units), so the figure does not depend on the order of the rows.
        nonzero = sql.SQL("filter (where {} <> 0)").format(column)
        return sql.SQL(
            "exp((sum((ln(abs({c}::float8)) * 1e6)::int8) {nz})::float8 / 1e6 / nullif(count(*) {nz}, 0))"
        ).format(c=column, nz=nonzero)
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


def measure(
    conn: Connection, feed: Feed, figures: list[dict[str, Any]], day: dt.date
) -> tuple[list[Any], tuple | None]:
    """Every figure of ``feed`` on ``day``, in the order given, from one pass over its partition;
    and, for a balance-moving feed, the day's roll-forward totals (``recon.totals_sql``:
    total, weighted, load) from the same pass."""
    expressions = [_expression(feed, f) for f in figures]
    totals = recon.totals_sql(feed.name) if feed.name in recon.MOVEMENT else []
    query = sql.SQL("select {} from raw.{} where _business_date = %(day)s").format(
        sql.SQL(", ").join(expressions + totals), _ident(feed.name)
    )
    row = list(conn.execute(query, {"day": day}).fetchone())
    n = len(expressions)
    return row[:n], (tuple(row[n:]) if totals and row[-1] is not None else None)


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
            value = None  # a scale of 5 rows is chance: not judged, not kept as history
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


def store(
    conn: Connection,
    day: dt.date,
    feeds: list[str],
    rows: list[dict[str, Any]],
    totals: dict[str, tuple] | None = None,
) -> dict[tuple, bool]:
    """Replace the day's figures of ``feeds`` (and the roll-forward ``totals`` of those that
    move balances: feed -> (total, weighted, load)); returns ``passed`` of each (feed, check)
    as the table defines it (the same column GX judges)."""
    from psycopg.types.json import Jsonb

    with conn.transaction():
        conn.execute("delete from dq.raw_profiles where business_date = %s and feed = any(%s)", (day, feeds))
        with conn.cursor().copy(f"copy dq.raw_profiles ({', '.join(COLUMNS)}) from stdin") as copy:
            for row in rows:
                copy.write_row([Jsonb(row[c]) if c == "band" else row[c] for c in COLUMNS])
        conn.execute("delete from dq.day_totals where business_date = %s and feed = any(%s)", (day, feeds))
        with conn.cursor() as cur:
            cur.executemany(
                "insert into dq.day_totals (business_date, feed, total, weighted, load_id) values (%s, %s, %s, %s, %s)",
                [(day, feed, *t) for feed, t in (totals or {}).items()],
            )
    return {
        (feed, check): passed
        for feed, check, passed in conn.execute(
            "select feed, check_name, passed from dq.raw_profiles where business_date = %s and feed = any(%s)",
            (day, feeds),
        )
    }


def profile_day(
    conn: Connection,
    connect: Callable[[], Connection],
    registry: Registry,
    figures: dict[str, list[dict[str, Any]]],
    feeds: list[str],
    day: dt.date,
) -> tuple[list[dict[str, Any]], dict[str, float], dict[tuple, bool]]:
    """Measure, judge and store ``feeds`` on ``day``: (profile rows, seconds per feed, passed).

    ``WORKERS`` connections (``connect`` opens one) take the feeds from one queue, the largest
    (by its last volume) first, each measuring one feed at a time with PostgreSQL's parallel
    query off: the feeds, not the scans, share the cores, and a worker that drew a small feed
    takes the next one (at 100,000 customers the largest feed is a third of the work: static
    halves left one core idle for a quarter of the gate)."""
    past = history.past_figures(conn, feeds, figures, day)
    size = {f: (past.get((f, "raw.volume")) or [0.0])[0] for f in feeds}
    queue = iter(sorted(feeds, key=size.__getitem__, reverse=True))
    lock = threading.Lock()

    def worker() -> list[tuple[str, list[dict[str, Any]], tuple | None, float]]:
        out = []
        with connect() as own:
            own.execute("set max_parallel_workers_per_gather = 0")
            while True:
                with lock:
                    name = next(queue, None)
                if name is None:
                    return out
                clock = time.perf_counter()
                feed = registry.feed(name)
                values, day_totals = measure(own, feed, figures[name], day)
                rows = judge(own, feed, figures[name], values, day, past)
                out.append((name, rows, day_totals, time.perf_counter() - clock))

    with ThreadPoolExecutor(WORKERS) as pool:
        runs = [pool.submit(worker) for _ in range(min(WORKERS, len(feeds)))]
        done = [r for run in runs for r in run.result()]
    by_feed = {name: (rows, seconds) for name, rows, _, seconds in done}
    rows = [r for name in feeds for r in by_feed[name][0]]
    totals = {name: t for name, _, t, _ in done if t is not None}
    return rows, {name: by_feed[name][1] for name in feeds}, store(conn, day, feeds, rows, totals)
