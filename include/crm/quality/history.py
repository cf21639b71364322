"""Today's bounds from a feed's own past: a robust band around the trailing 28 days.

A volume, a null rate, a median: each is judged against the same figure on the feed's
last ``WINDOW`` loaded days, as ``median +/- max(K_MAD x 1.4826 x MAD, REL x |median|,
floor)``. A young feed (fewer than ``WARM_UP`` days) is not judged yet: its bounds are the
widest the expectation allows, and the result says so (``expected.warm_up``).

Volume comes from ``audit.load_log`` (every loaded day has it, gates or not); the other
figures from the gate's own earlier observations in ``dq.expectation_results`` (the median
and MAD shrug off the odd bad day; a lasting change of level becomes the new normal after
a few days instead of failing every day after it). A median is judged as a ratio (within a
factor of its history), so a unit shift stands out on any scale.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from typing import Any

from psycopg import Connection

from crm.quality.suites import parameter

WINDOW = 28
WARM_UP = 5
K_MAD = 5.0
REL = 0.4
# The widest bounds of each kind of figure (warm-up), and the smallest half-width.
RANGES = {
    "expect_table_row_count_to_be_between": (0, 1e15),
    "expect_column_unique_value_count_to_be_between": (0, 1e15),
    "expect_column_proportion_of_non_null_values_to_be_between": (0.0, 1.0),
}
WIDEST = (-1e18, 1e18)
# More completeness than usual is never a fault; a proportion moves by chance on a small
# day (binomial noise of a 50-row file is +/-0.14), so only a drop of 0.3 or more counts.
ONE_SIDED = {"expect_column_proportion_of_non_null_values_to_be_between"}
PROPORTION_FLOOR = 0.3
# A median (amount, balance, cost) moves by chance within a factor of RATIO_FLOOR at least,
# more where its history says so; a unit shift (x100) leaves that band on any scale.
RATIO = {"expect_column_median_to_be_between"}
RATIO_FLOOR = 3.0
# A median or a rate of a handful of rows is chance (a day of 5 campaign contacts mixes
# 0.02 push messages with 60.00 RM visits: its median jumps 100x between days): a value
# figure is judged, and kept as history, only on a day with at least MIN_SAMPLE rows. The
# volume is judged on every day. (The fault injector picks feeds a gate can judge.)
MIN_SAMPLE = 20
K_RATIO = 3.0  # robust deviations of log(median): a noisy small feed still sees x100


def band(values: list[float], expectation: str) -> dict[str, Any]:
    """Bounds for today's figure given the past ones (oldest first or any order)."""
    low, high = RANGES.get(expectation, WIDEST)
    if len(values) < WARM_UP:
        return {"min": low, "max": high, "warm_up": True, "days": len(values)}
    if expectation in RATIO:  # a level: judged as a ratio, so a unit shift stands out on any scale
        if min(values) <= 0:
            return {
                "min": low,
                "max": high,
                "not_judged": "a median of 0 or less in its history",
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
    if expectation in (
        "expect_table_row_count_to_be_between",
        "expect_column_unique_value_count_to_be_between",
    ):
        # counting (Poisson) noise of a small feed: 3 sd and a few; the sd from the mean, as a
        # rare feed's median is 0 (referrals 0,1,2,0,0,1,2,0,0,1,0 a day, then 6: chance)
        floor = 3 * math.sqrt(max(statistics.fmean(values), 1.0)) + 4
    elif expectation == "expect_column_proportion_of_non_null_values_to_be_between":
        floor = PROPORTION_FLOOR
    else:
        floor = 1e-9
    half = max(K_MAD * 1.4826 * mad, REL * abs(mid), floor)
    top = high if expectation in ONE_SIDED else min(high, mid + half)
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


def past_observations(conn: Connection, gate: str, subject: str, check: str, day: dt.date) -> list[float]:
    rows = conn.execute(
        """select distinct on (r.business_date) e.observed_value
        from dq.validation_runs r join dq.expectation_results e using (run_id)
        where r.gate = %s and r.subject = %s and e.check_name = %s and r.business_date < %s
          and r.business_date >= %s and jsonb_typeof(e.observed_value) = 'number'
        order by r.business_date desc, r.run_id desc""",
        (gate, subject, check, day, day - dt.timedelta(days=3 * WINDOW)),
    ).fetchall()
    return [float(r[0]) for r in rows[:WINDOW]]


def parameters(
    conn: Connection, gate: str, subject: str, day: dt.date, checks: list[tuple[str, str, str]]
) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """GX expectation parameters for ``checks`` ((check, expectation, history) triples) and
    the band behind each, by check name."""
    params: dict[str, float] = {}
    bands: dict[str, dict[str, Any]] = {}
    for check, expectation, history in checks:
        if history == "rows":
            values = past_volumes(conn, subject, day)
        else:
            values = past_observations(conn, gate, subject, check, day)
        bands[check] = band(values, expectation)
        params[parameter(check, "min")], params[parameter(check, "max")] = (
            bands[check]["min"],
            bands[check]["max"],
        )
    return params, bands
