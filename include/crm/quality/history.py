"""Today's bounds from a feed's own past: a robust band around the trailing 28 days.

A volume, a null rate, a scale: each is judged against the same figure on the feed's
last ``WINDOW`` loaded days, as ``median +/- max(K_MAD x 1.4826 x MAD, REL x |median|,
floor)``. A young feed (fewer than ``WARM_UP`` days) is not judged yet: its bounds are the
widest the expectation allows, and the result says so (``expected.warm_up``).

Volume comes from ``audit.load_log`` (every loaded day has it, gates or not); the other
figures from the gate's own earlier observations in ``dq.expectation_results`` (the median
and MAD shrug off the odd bad day; a lasting change of level becomes the new normal after
a few days instead of failing every day after it). A scale (typical magnitude) is judged as
a ratio (within a factor of its history), so a unit shift stands out on any scale.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from typing import Any

from psycopg import Connection

WINDOW = 28
WARM_UP = 5
K_MAD = 5.0
REL = 0.4
# The widest bounds of each kind of figure (crm.quality.suites.Figure.kind) during warm-up.
RANGES = {
    "row_count": (0, 1e15),
    "distinct_count": (0, 1e15),
    "non_null_share": (0.0, 1.0),
}
WIDEST = (-1e18, 1e18)
# More completeness than usual is never a fault; a proportion moves by chance on a small
# day (binomial noise of a 50-row file is +/-0.14), so only a drop of 0.3 or more counts.
ONE_SIDED = {"non_null_share"}
PROPORTION_FLOOR = 0.3
# A scale (amount, balance, cost) moves by chance within a factor of RATIO_FLOOR at least,
# more where its history says so; a unit shift (x100) leaves that band on any scale.
RATIO = {"scale"}
RATIO_FLOOR = 3.0
# A scale or a rate of a handful of rows is chance (a day of 5 campaign contacts mixes
# 0.02 push messages with 60.00 RM visits: its scale jumps 10x between days): a value
# figure is judged, and kept as history, only on a day with at least MIN_SAMPLE rows. The
# volume is judged on every day. (The fault injector picks feeds a gate can judge.)
MIN_SAMPLE = 20
K_RATIO = 3.0  # robust deviations of log(scale): a noisy small feed still sees x100


def band(values: list[float], kind: str) -> dict[str, Any]:
    """Bounds for today's figure given the past ones (oldest first or any order)."""
    low, high = RANGES.get(kind, WIDEST)
    if len(values) < WARM_UP:
        return {"min": low, "max": high, "warm_up": True, "days": len(values)}
    if kind in RATIO:  # a level: judged as a ratio, so a unit shift stands out on any scale
        if min(values) <= 0:
            return {
                "min": low,
                "max": high,
                "not_judged": "a scale of 0 or less in its history",
                "days": len(values),
            }
        logs = [math.log(v) for v in values]
        mid = statistics.median(logs)
        factor = max(math.exp(K_RATIO * 1.4826 * statistics.median(abs(v - mid) for v in logs)), RATIO_FLOOR)
        return {
            "min": math.exp(mid) / factor,
            "max": math.exp(mid) * factor,
            "median": math.exp(mid),
            "days": len(values),
        }
    mid = statistics.median(values)
    mad = statistics.median(abs(v - mid) for v in values)
    if kind in ("row_count", "distinct_count"):
        # counting (Poisson) noise of a small feed: 3 sd and a few; the sd from the mean, as a
        # rare feed's median is 0 (referrals 0,1,2,0,0,1,2,0,0,1,0 a day, then 6: chance)
        floor = 3 * math.sqrt(max(statistics.fmean(values), 1.0)) + 4
    elif kind == "non_null_share":
        floor = PROPORTION_FLOOR
    else:
        floor = 1e-9
    half = max(K_MAD * 1.4826 * mad, REL * abs(mid), floor)
    top = high if kind in ONE_SIDED else min(high, mid + half)
    return {"min": max(low, mid - half), "max": top, "median": mid, "days": len(values)}


def past_volumes(conn: Connection, feed: str, day: dt.date) -> list[float]:
    """The feed's rows on its last ``WINDOW`` loaded days of the same kind as ``day``: a month
    end is judged against earlier month ends (the core system books interest, fees and loan
    repayments then: 4,179 transactions against ~870 on other days), any other day against
    days that are not month ends. A bank with fewer than ``WARM_UP`` month ends does not judge
    a month end's volume yet."""
    rows = conn.execute(
        "select rows_loaded from audit.load_log where feed = %s and status = 'loaded'"
        " and business_date < %s"
        " and (extract(day from business_date + 1) = 1) = (extract(day from %s::date + 1) = 1)"
        " order by business_date desc limit %s",
        (feed, day, day, WINDOW),
    ).fetchall()
    return [float(r[0]) for r in rows]


def past_figures(
    conn: Connection, feeds: list[str], figures: dict[str, list[dict[str, Any]]], day: dt.date
) -> dict[tuple[str, str], list[float]]:
    """(feed, check) -> the figure on the feed's last ``WINDOW`` days before ``day``, newest
    first: volumes from the load log (:func:`past_volumes`), the others from the raw gate's
    earlier results, for every feed in one query."""
    out: dict[tuple[str, str], list[float]] = {}
    for feed in feeds:
        if any(f.get("history") == "rows" for f in figures[feed]):
            out[(feed, "raw.volume")] = past_volumes(conn, feed, day)
    rows = conn.execute(
        """select distinct on (r.subject, e.check_name, r.business_date) r.subject, e.check_name,
               (e.observed_value #>> '{}')::float8
        from dq.validation_runs r join dq.expectation_results e using (run_id)
        where r.gate = 'raw' and r.subject = any(%s) and r.business_date < %s
          and r.business_date >= %s and jsonb_typeof(e.observed_value) = 'number'
        order by r.subject, e.check_name, r.business_date desc, r.run_id desc""",
        (feeds, day, day - dt.timedelta(days=3 * WINDOW)),
    ).fetchall()
    for feed, check, value in rows:
        if check == "raw.volume":  # from the load log above
            continue
        values = out.setdefault((feed, check), [])
        if len(values) < WINDOW:
            values.append(value)
    return out
