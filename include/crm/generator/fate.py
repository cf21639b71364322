"""Each customer's fate, and how much of it shows before it happens.

A churn model trained on the sample bank is only worth something if churn is as hard
to see coming as it is in a real bank. So the signals are noisy on purpose:

* every churner has a **precursor strength** (drawn once): in their warning window their
  own activity falls by that share, and the other signals (complaints, unresolved calls,
  queues, draw-downs to a competitor) scale with it. Some fade out almost completely,
  many only a little;
* a share of churners (:data:`NO_WARNING_SHARE`) **leave with no warning** at all:
  strength 0, business as usual until the churn day (a competitor's offer, a move);
* the **warning window** differs per churner (:data:`WINDOW_DAYS`), instead of one
  constant that would let a model learn the exact horizon;
* customers who stay have **quiet spells** (travel, illness, a salary account elsewhere
  for a while): a few percent a year use the bank much less for 20-60 days, then come
  back. Without them, every quiet customer would be a churner.

Churn day and type are drawn exactly as before this module existed (same draws from the
same generator), so the churn rate and the churners themselves do not change; the new
draws come from their own generators keyed by (seed, day), and stay deterministic.
All state lives in the bank's per-customer arrays (:data:`FIELDS`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

ANNUAL_CHURN = 0.12  # DOMAIN.md: 10-15 % a year (closure plus silent)
NEVER = 10**6  # a day number beyond any simulation: "does not happen"
FIRST_CHURN_AFTER = 60  # new customers stay at least this many days
CLOSURE_SHARE = 0.45  # churn type 1 (closure); the rest leave silently (type 2)
NO_WARNING_SHARE = 0.15  # churners whose behaviour does not change before they leave
STRENGTH_BETA = (2.0, 1.6)  # strength of those who do warn: mean 0.56, from ~0.05 to ~1
# Warning window, drawn uniformly per churner: disengagement takes months. At least the
# 90-day label horizon, so a churner who warns at all shows something at the last month-end
# snapshot before leaving. With (30, 120) and 27 % leaving without warning, half the churners
# of a snapshot showed nothing at all, and even a model knowing each customer's hidden signal
# reached a ROC AUC of only 0.75 out of time (0.88 with these values; docs/ml.md).
WINDOW_DAYS = (90, 180)
QUIET_ANNUAL = 0.04  # quiet spells started a year, per customer who stays
QUIET_DAYS = (20, 60)  # spell length, uniform
QUIET_LEVEL = (0.05, 0.3)  # share of the usual own activity left during a spell
# What is left of a customer's own activity after the churn day: none. A silent leaver
# stops using the bank (only the bank's own postings reach the account); with 3 % left, the
# label's "no customer-initiated activity for 60 days" almost never held (53 of 54 silent
# leavers of a test window were labelled as staying).
GONE_ACTIVITY = 0.0
DRAWDOWN_P = 0.25  # daily chance an asset account of a full-strength churner is drawn down

FIELDS: list[tuple[str, object]] = [
    ("churn_day", np.int32),  # days after the start; NEVER if beyond any horizon
    ("churn_type", np.int8),  # 1 closure, 2 silent
    ("strength", np.float32),  # 0 (no warning) .. 1
    ("window", np.int16),  # warning window in days
    ("quiet_start", np.int32),  # next (or current) quiet spell [start, end); NEVER if none
    ("quiet_end", np.int32),
    ("quiet_level", np.float32),
]


@dataclass(frozen=True)
class Signals:
    """One day's behaviour modifiers, one value per customer.

    ``pre`` runs 0 -> 1 across a churner's warning window (0 outside it), ``signal`` is
    ``strength * pre``: what the channel systems can see (0 for no-warning churners).
    ``activity`` multiplies the customer's own activity (1 = usual)."""

    to_churn: np.ndarray
    pre: np.ndarray
    signal: np.ndarray
    activity: np.ndarray
    drawdown_p: np.ndarray


def draw_churn(
    rng: np.random.Generator, loyalty: np.ndarray, sensitivity: np.ndarray, first: int
) -> tuple[np.ndarray, np.ndarray]:
    """Churn day (days after the start, from ``first`` on) and type; loyal customers leave
    less, service-sensitive ones more. Consumes ``rng`` exactly as the bank always did."""
    k = len(loyalty)
    hazard = ANNUAL_CHURN / 365 * (1.8 - 1.4 * loyalty) * (0.7 + 0.6 * sensitivity)
    wait = rng.geometric(np.clip(hazard, 1e-6, 1), k)
    churn_day = np.where(first + wait < NEVER, first + wait, NEVER).astype(np.int32)
    churn_type = np.where(rng.random(k) < CLOSURE_SHARE, 1, 2).astype(np.int8)
    return churn_day, churn_type


def draw_behaviour(seed: int, d: int, churn_day: np.ndarray, first: int) -> dict[str, np.ndarray]:
    """Precursor strength, warning window and first quiet spell of customers created on day
    ``d``, from their own generator (the bank's other draws stay as they were)."""
    rng = np.random.default_rng([seed, 3, d])
    k = len(churn_day)
    warns = rng.random(k) >= NO_WARNING_SHARE
    strength = np.where(warns, rng.beta(*STRENGTH_BETA, k), 0.0).astype(np.float32)
    window = rng.integers(WINDOW_DAYS[0], WINDOW_DAYS[1] + 1, k).astype(np.int16)
    spell = _draw_spells(rng, np.full(k, first, dtype=np.int64), churn_day, window)
    return {"strength": strength, "window": window} | spell


def _draw_spells(
    rng: np.random.Generator, after: np.ndarray, churn_day: np.ndarray, window: np.ndarray
) -> dict[str, np.ndarray]:
    """The next quiet spell after day ``after``; none if it would reach into the customer's
    warning window (a quiet spell is what someone who stays does)."""
    k = len(after)
    start = after + rng.geometric(QUIET_ANNUAL / 365, k)
    end = start + rng.integers(QUIET_DAYS[0], QUIET_DAYS[1] + 1, k)
    level = rng.uniform(*QUIET_LEVEL, k).astype(np.float32)
    ok = end < churn_day.astype(np.int64) - window
    return {
        "quiet_start": np.where(ok, np.minimum(start, NEVER), NEVER).astype(np.int32),
        "quiet_end": np.where(ok, np.minimum(end, NEVER), NEVER).astype(np.int32),
        "quiet_level": level,
    }


def signals(arrays: dict[str, np.ndarray], n: int, d: int, alive: np.ndarray) -> Signals:
    """Today's precursors and activity of the first ``n`` customers."""
    to_churn = arrays["churn_day"][:n].astype(np.int64) - d
    window = arrays["window"][:n]
    pre = np.clip(1 - to_churn / window, 0, 1) * (to_churn > 0)
    strength = arrays["strength"][:n]
    signal = strength * pre
    quiet = (arrays["quiet_start"][:n] <= d) & (d < arrays["quiet_end"][:n])
    usual = np.where(quiet, arrays["quiet_level"][:n], 1.0)
    activity = np.where(to_churn <= 0, GONE_ACTIVITY, (1 - signal) * usual) * alive
    drawdown_p = DRAWDOWN_P * strength * (pre > 0)
    return Signals(to_churn, pre, signal, activity, drawdown_p)


def next_spells(seed: int, arrays: dict[str, np.ndarray], n: int, d: int) -> None:
    """Customers whose quiet spell ended today get their next one (if any)."""
    done = np.flatnonzero(arrays["quiet_end"][:n] == d)
    if len(done):
        rng = np.random.default_rng([seed, 4, d])
        spell = _draw_spells(
            rng, np.full(len(done), d, dtype=np.int64), arrays["churn_day"][done], arrays["window"][done]
        )
        for name, values in spell.items():
            arrays[name][done] = values


def exits(
    arrays: dict[str, np.ndarray], n: int, d: int, churn_today: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Status changes of leavers: closures close today; silent leavers just stop using the
    bank, and the core marks them dormant after 60 quiet days. Returns (closed, dormant)."""
    status = arrays["status"][:n]
    closure = churn_today & (arrays["churn_type"][:n] == 1)
    status[closure] = 2
    dormant = (arrays["churn_type"][:n] == 2) & (arrays["churn_day"][:n] == d - 60) & (status == 0)
    status[dormant] = 1
    return closure, dormant


def drawdowns(
    rng: np.random.Generator, sig: Signals, owner: np.ndarray, eligible: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Accounts drawn down today and the share of the balance taken: more often the stronger
    the owner's precursors, more each time the nearer the churn day."""
    p = sig.pre[owner]
    drawing = np.flatnonzero(eligible & (p > 0) & (rng.random(len(owner)) < sig.drawdown_p[owner]))
    return drawing, 0.08 * p[drawing]


def truth(arrays: dict[str, np.ndarray], n: int, start: dt.date, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth columns churn_date ('' if none in the horizon) and churn_type
    (closure / silent / none)."""
    churn_day = arrays["churn_day"][:n]
    churned = churn_day < days
    when = np.datetime64(start.isoformat()) + churn_day.clip(max=days).astype("timedelta64[D]")
    churn_date = np.where(churned, np.datetime_as_string(when), "")
    kind = np.where(churned, np.array(["none", "closure", "silent"])[arrays["churn_type"][:n]], "none")
    return churn_date, kind
