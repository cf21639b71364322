"""Scores of a binary classifier on one test set: ranking, probability quality, campaign value.

Everything takes ``y_true`` (0/1) and ``y_score`` (predicted probability of the positive class,
here: churn) as array-likes of equal length; nothing here fits anything.

- ranking: ROC AUC, PR AUC (average precision: the area that matters when churners are rare);
- probabilities: Brier score, a 10-bin calibration table (mean predicted vs observed rate) and
  the expected calibration error (ECE: the count-weighted mean gap of that table);
- campaign value: top-decile lift and capture rate (the retention team calls the 10 % of
  customers the model ranks riskiest: how many churners does that reach, and how many times
  the base rate is that?) and the gains table by decile behind the report's lift chart.

Top-k selection sorts by score, highest first, ties in input order (a stable sort), and takes
``ceil(fraction * n)`` rows: with heavy ties the decile is a convention, not a property.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

__all__ = [
    "calibration_table",
    "evaluate",
    "expected_calibration_error",
    "gains_table",
    "lift_and_capture",
]


def _arrays(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(y_score, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} values, y_score {p.size}")
    if y.size == 0:
        raise ValueError("no rows to evaluate")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y_true must be 0/1")
    return y, p


def lift_and_capture(y_true, y_score, fraction: float = 0.1) -> tuple[float, float]:
    """(lift, capture rate) of the top ``fraction`` of rows by score.

    capture = positives in the top / all positives; lift = positive rate in the top / overall
    positive rate. NaN when there is no positive at all.
    """
    y, p = _arrays(y_true, y_score)
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    k = max(1, math.ceil(fraction * y.size))
    order = np.argsort(-p, kind="stable")
    top = y[order[:k]]
    total = y.sum()
    if total == 0:
        return float("nan"), float("nan")
    capture = top.sum() / total
    lift = (top.mean()) / (total / y.size)
    return float(lift), float(capture)


def gains_table(y_true, y_score, n_groups: int = 10) -> pd.DataFrame:
    """Cumulative gains by score group (decile by default), riskiest first.

    Columns: ``group`` (1 = top), ``fraction`` of rows reached, ``rows``, ``positives``,
    ``rate`` (positive rate in the group), ``lift`` (group rate / base rate),
    ``cumulative_capture`` and ``cumulative_lift``.
    """
    y, p = _arrays(y_true, y_score)
    order = np.argsort(-p, kind="stable")
    ys = y[order]
    bounds = [math.ceil(i * y.size / n_groups) for i in range(n_groups + 1)]
    base = ys.mean() if ys.size else float("nan")
    total = ys.sum()
    rows = []
    for g in range(n_groups):
        chunk = ys[bounds[g] : bounds[g + 1]]
        reached = ys[: bounds[g + 1]]
        rate = chunk.mean() if chunk.size else float("nan")
        rows.append(
            {
                "group": g + 1,
                "fraction": bounds[g + 1] / y.size,
                "rows": int(chunk.size),
                "positives": int(chunk.sum()),
                "rate": float(rate),
                "lift": float(rate / base) if base else float("nan"),
                "cumulative_capture": float(reached.sum() / total) if total else float("nan"),
                "cumulative_lift": float(reached.mean() / base) if base and reached.size else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def calibration_table(y_true, y_score, n_bins: int = 10) -> pd.DataFrame:
    """Reliability table on ``n_bins`` equal-width probability bins [0, 0.1), ..., [0.9, 1].

    Columns: ``bin``, ``lower``, ``upper``, ``count``, ``mean_predicted``, ``observed_rate``
    (NaN for an empty bin). Probabilities outside [0, 1] are clipped into the end bins.
    """
    y, p = _arrays(y_true, y_score)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(np.clip(p, 0, 1), edges[1:-1], right=False), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        mask = idx == b
        n = int(mask.sum())
        rows.append(
            {
                "bin": b + 1,
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": n,
                "mean_predicted": float(p[mask].mean()) if n else float("nan"),
                "observed_rate": float(y[mask].mean()) if n else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def expected_calibration_error(y_true, y_score, n_bins: int = 10) -> float:
    """Sum over bins of (share of rows in the bin) x |mean predicted - observed rate|."""
    table = calibration_table(y_true, y_score, n_bins)
    filled = table[table["count"] > 0]
    weights = filled["count"] / filled["count"].sum()
    return float((weights * (filled["mean_predicted"] - filled["observed_rate"]).abs()).sum())


def evaluate(y_true, y_score, top_fraction: float = 0.1) -> dict[str, float]:
    """The metrics the registry and the report carry, as plain floats (JSON-ready).

    ROC and PR AUC are NaN when the test set holds a single class.
    """
    y, p = _arrays(y_true, y_score)
    both = 0 < y.sum() < y.size
    lift, capture = lift_and_capture(y, p, top_fraction)
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "brier": float(brier_score_loss(y, np.clip(p, 0, 1))),
        "top_decile_lift": lift,
        "top_decile_capture": capture,
        "ece": expected_calibration_error(y, p),
        "base_rate": float(y.mean()),
        "n": int(y.size),
        "positives": int(y.sum()),
    }
