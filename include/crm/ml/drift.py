"""Drift of the churn model's inputs and score: population stability index (PSI) per day.

Why PSI: one number per feature that compares the share of customers in fixed bins between
the model's training sample (the *reference*) and a scored day, readable without statistics
(< 0.1 stable, 0.1-0.25 shifting, >= 0.25 the model sees a population it was not trained on).

Reference (:func:`reference_profile`): computed once, at registration, from the training rows
and stored in ``ml.model_versions.drift_reference`` (jsonb, migration 0011) by
:func:`store_reference`, so scoring never needs the training data again:

* numeric feature and the score: decile edges of the training values (ties collapse, so a
  count that is 0 for 60 % of customers gets one bin for the zeros), one bin per interval
  plus one for missing values, and the share of training rows in each;
* categorical feature: its (at most 50 most frequent) training categories, "other", missing.

A day (:class:`DriftAccumulator`) counts its rows into the same bins chunk by chunk (memory
is the bins, not the rows). PSI = sum((a - e) * ln(a / e)) over bins, shares floored at
1e-4 so an empty bin is large but finite. :func:`write_drift` replaces the (model version,
day) rows of ``ml.drift``: re-scoring a day never duplicates them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "ALERT",
    "SCORE",
    "WARNING",
    "DriftAccumulator",
    "DriftRow",
    "load_reference",
    "psi",
    "reference_from_training",
    "reference_profile",
    "status",
    "store_reference",
    "write_drift",
]

log = logging.getLogger(__name__)

WARNING, ALERT = 0.1, 0.25
SCORE = "churn_probability"  # the score's name in ml.drift (the column of ml.churn_scores)
FLOOR = 1e-4
MAX_CATEGORIES = 50
_DECILES = np.linspace(0.1, 0.9, 9)


def psi(expected: Sequence[float], actual: Sequence[float], floor: float = FLOOR) -> float:
    """Population stability index between two share vectors over the same bins."""
    e = np.clip(np.asarray(expected, dtype="float64"), floor, None)
    a = np.clip(np.asarray(actual, dtype="float64"), floor, None)
    return float(np.sum((a - e) * np.log(a / e)))


def status(value: float) -> str:
    return "ok" if value < WARNING else "warning" if value < ALERT else "alert"


def _numeric_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value: 0 .. len(edges) for (-inf, e0], (e0, e1], ..., (e_last, inf); missing last."""
    values = np.asarray(values, dtype="float64")
    bins = np.digitize(values, edges, right=True)
    bins[np.isnan(values)] = len(edges) + 1
    return bins


def _categorical_bins(values: pd.Series, categories: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(categories)}
    missing = values.isna().to_numpy()
    bins = np.array([index.get(str(v), len(categories)) for v in values], dtype=np.int64)
    bins[missing] = len(categories) + 1
    return bins


def _profile_numeric(values: np.ndarray) -> dict[str, Any]:
    values = np.asarray(values, dtype="float64")
    present = values[~np.isnan(values)]
    edges = np.unique(np.quantile(present, _DECILES)) if present.size else np.array([])
    counts = np.bincount(_numeric_bins(values, edges), minlength=len(edges) + 2)
    return {"kind": "numeric", "edges": edges.tolist(), "shares": (counts / max(len(values), 1)).tolist()}


def _profile_categorical(values: pd.Series) -> dict[str, Any]:
    categories = values.dropna().astype(str).value_counts().index[:MAX_CATEGORIES].tolist()
    counts = np.bincount(_categorical_bins(values, categories), minlength=len(categories) + 2)
    return {
        "kind": "categorical",
        "categories": categories,
        "shares": (counts / max(len(values), 1)).tolist(),
    }


def reference_profile(
    frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str], scores: Sequence[float]
) -> dict[str, Any]:
    """JSON-ready bins and shares of each feature and of the score over the training rows."""
    features = {c: _profile_numeric(frame[c].to_numpy(dtype="float64")) for c in numeric}
    features.update({c: _profile_categorical(frame[c]) for c in categorical})
    return {"rows": len(frame), "features": features, "score": _profile_numeric(np.asarray(scores))}


def reference_from_training(result, frame: pd.DataFrame) -> dict[str, Any]:
    """The reference of a :class:`crm.ml.churn.ChurnResult`: its training rows of ``frame`` (the
    frame given to ``train``) and the trained model's scores on them."""
    rows = frame.iloc[result.split.train_index]
    X = rows[result.columns.features]
    return reference_profile(
        X, result.columns.numeric, result.columns.categorical, result.model.predict_proba(X)[:, 1]
    )


def store_reference(conn, name: str, version: str, reference: dict[str, Any]) -> None:
    """Attach ``reference`` to the registered version (``ml.model_versions.drift_reference``)."""
    updated = conn.execute(
        "update ml.model_versions set drift_reference = %s where name = %s and version = %s",
        (json.dumps(reference), name, version),
    ).rowcount
    if updated != 1:
        raise LookupError(f"model {name} {version} is not registered: register it before its drift reference")


def load_reference(conn, name: str, version: str) -> dict[str, Any] | None:
    row = conn.execute(
        "select drift_reference from ml.model_versions where name = %s and version = %s", (name, version)
    ).fetchone()
    return None if row is None else row[0]


@dataclass(frozen=True)
class DriftRow:
    feature: str
    kind: str  # feature or score
    psi: float
    status: str


class DriftAccumulator:
    """Bin counts of one scored day, fed chunk by chunk, compared with the reference."""

    def __init__(self, reference: dict[str, Any]) -> None:
        self.reference = reference
        self.rows = 0
        self._counts = {c: np.zeros(len(p["shares"])) for c, p in reference["features"].items()}
        self._score = np.zeros(len(reference["score"]["shares"]))

    def _bins(self, profile: dict[str, Any], values) -> np.ndarray:
        if profile["kind"] == "numeric":
            return _numeric_bins(np.asarray(values, dtype="float64"), np.asarray(profile["edges"]))
        return _categorical_bins(pd.Series(values, dtype=object), profile["categories"])

    def update(self, frame: pd.DataFrame, scores: Sequence[float]) -> None:
        for column, profile in self.reference["features"].items():
            self._counts[column] += np.bincount(
                self._bins(profile, frame[column]), minlength=len(profile["shares"])
            )
        self._score += np.bincount(self._bins(self.reference["score"], scores), minlength=len(self._score))
        self.rows += len(frame)

    def results(self) -> list[DriftRow]:
        """PSI of each feature, then of the score (empty when no row was seen)."""
        if self.rows == 0:
            return []
        out = []
        for column, profile in self.reference["features"].items():
            value = psi(profile["shares"], self._counts[column] / self.rows)
            out.append(DriftRow(column, "feature", value, status(value)))
        value = psi(self.reference["score"]["shares"], self._score / self.rows)
        out.append(DriftRow(SCORE, "score", value, status(value)))
        return out


def write_drift(conn, name: str, version: str, day: dt.date, rows: Sequence[DriftRow], scored: int) -> None:
    """Replace the drift rows of (model, version, day); call inside the scoring transaction."""
    conn.execute(
        "delete from ml.drift where model_name = %s and model_version = %s and business_day = %s",
        (name, version, day),
    )
    with conn.cursor() as cur:
        cur.executemany(
            "insert into ml.drift (model_name, model_version, business_day, feature, kind, psi, status, rows)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s)",
            [(name, version, day, r.feature, r.kind, r.psi, r.status, scored) for r in rows],
        )
    alerts = [r for r in rows if r.psi >= ALERT]
    if alerts:
        log.warning(
            "drift alert for %s %s on %s: %s (PSI >= %.2f vs the training sample)",
            name,
            version,
            day,
            ", ".join(f"{r.feature} {r.psi:.2f}" for r in alerts),
            ALERT,
        )
