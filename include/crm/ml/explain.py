"""Churn reason codes: the three features that push each customer's churn score up, in words.

Why SHAP on the trees, and how it maps to this pipeline: the champion is a
``CalibratedClassifierCV`` whose members are each ``Pipeline(ColumnTransformer,
HistGradientBoostingClassifier)`` fitted on one fold. ``shap.TreeExplainer`` reads a fitted
HGB directly (exact, path-dependent Tree SHAP, no background sample) and explains its raw
output, the log-odds margin, on the *transformed* columns. For each member we

1. transform the rows with the member's own ``ColumnTransformer``,
2. take the Tree SHAP values of its HGB (checked additive: they sum to margin - base value),
3. add the values of the output columns back onto their source column (a one-hot block onto
   its categorical column, a passthrough numeric onto itself),

and average the members, as ``predict_proba`` averages them. Each member's calibrator
(sigmoid or isotonic) is non-decreasing in the margin, so a feature that raises the margin
does not lower the calibrated probability: positive values are the features that push the
score up. The reason codes are the (at most) three largest positive contributions.

Wording (:data:`WORDING`): what a relationship manager reads ("no activity for 75 days",
"balance down 60 % vs 30 days ago"); a column without wording gets a readable fallback from
its name (:func:`humanize`), never the raw ``snake_case`` name. Feature windows are the
marts' 90-day activity window (``activity_window_days`` in dbt_project.yml).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["TOP", "WORDING", "Reason", "ReasonExplainer", "describe", "humanize"]

TOP = 3
_SEP = "\x1f"  # joins a column's position to its category in one-hot names (never in data)


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _count(noun: str, what: str = "in the last 90 days") -> Callable[[Any], str]:
    def word(v: Any) -> str:
        n = _num(v)
        if n is None:
            return f"no {noun}s on record"
        return f"{n:,.0f} {noun}{'' if n == 1 else 's'} {what}"

    return word


def _hkd(template: str, missing: str) -> Callable[[Any], str]:
    def word(v: Any) -> str:
        n = _num(v)
        return missing if n is None else template.format(f"HKD {n:,.0f}")

    return word


def _recency(v: Any) -> str:
    n = _num(v)
    return "no activity on record" if n is None else f"no own activity for {n:,.0f} days"


def _trb_ratio(v: Any) -> str:
    n = _num(v)
    if n is None:
        return "no balance 30 days ago to compare with"
    change = (n - 1.0) * 100
    if abs(change) < 0.5:
        return "balance unchanged vs 30 days ago"
    return f"balance {'down' if change < 0 else 'up'} {abs(change):.0f} % vs 30 days ago"


def _tenure(v: Any) -> str:
    n = _num(v)
    if n is None:
        return "customer since an unknown date"
    return f"customer for {n:,.0f} days" if n < 365 else f"customer for {n / 365.25:.1f} years"


def _share(v: Any) -> str:
    n = _num(v)
    return "no contacts to measure digital use" if n is None else f"{n * 100:.0f} % of contacts digital"


def _wait(v: Any) -> str:
    n = _num(v)
    return "no branch visits timed" if n is None else f"waited {n / 60:.0f} min on average at the branch"


def _satisfaction(v: Any) -> str:
    n = _num(v)
    return "no satisfaction survey answered" if n is None else f"satisfaction {n:.1f} of 5"


def _products(v: Any) -> str:
    n = _num(v)
    if n is None:
        return "no products on record"
    return f"holds {n:,.0f} product famil{'y' if n == 1 else 'ies'}"


def _vs_usual(what: str, usual: str) -> Callable[[Any], str]:
    """A ratio to the customer's own usual level: "transactions down 40 % vs their usual"."""

    def word(v: Any) -> str:
        n = _num(v)
        if n is None:
            return f"{what}: nothing earlier to compare with"
        change = (n - 1.0) * 100
        if abs(change) < 0.5:
            return f"{what} as usual ({usual})"
        return f"{what} {'down' if change < 0 else 'up'} {abs(change):.0f} % vs {usual}"

    return word


def _slope(v: Any) -> str:
    n = _num(v)
    if n is None:
        return "no activity in the last 3 months"
    if abs(n) < 0.005:
        return "activity steady over the last 3 months"
    return f"activity {'falling' if n < 0 else 'rising'} {abs(n) * 100:.0f} % a month over the last 3 months"


def _drawdown(v: Any) -> str:
    n = _num(v)
    if n is None:
        return "no balance in the last 6 months"
    return "balance at its 6-month high" if n < 0.005 else f"balance {n * 100:.0f} % below its 6-month high"


def _per_balance(v: Any) -> str:
    n = _num(v)
    if n is None:
        return "no balance to compare transfers to other banks with"
    return f"moved {n * 100:.0f} % of the usual balance to other banks in the last 90 days"


def _transfer_share(v: Any) -> str:
    n = _num(v)
    if n is None:
        return "no transfers out in the last 90 days"
    return f"{n * 100:.0f} % of transfers out in the last 90 days went to other banks"


def _band(label: str) -> Callable[[Any], str]:
    def word(v: Any) -> str:
        return (
            f"{label} not recorded"
            if v is None or (isinstance(v, float) and math.isnan(v))
            else f"{label} {v}"
        )

    return word


# Feature column -> wording of its value. Keep a column's unit and window in the text.
WORDING: dict[str, Callable[[Any], str]] = {
    "recency_days": _recency,
    "trb_ratio_30d": _trb_ratio,
    "trb_hkd": _hkd("balance {} across deposits and investments", "no balance on record"),
    "liabilities_hkd": _hkd("owes {} on loans and cards", "no loans or cards on record"),
    "outflow_to_competitors_hkd": _hkd(
        "{} moved to other banks in the last 90 days", "no transfers to other banks"
    ),
    "txn_amount_hkd": _hkd("{} transacted in the last 90 days", "no transactions on record"),
    "profit_annualised_hkd": _hkd("annualised profit {}", "profit not known"),
    "txn_count": _count("own transaction"),
    "interactions": _count("contact", "with the bank in the last 90 days"),
    "branch_visits": _count("branch visit"),
    "online_sessions": _count("online-banking session"),
    "mobile_events": _count("mobile-app event"),
    "calls": _count("call", "to the contact centre in the last 90 days"),
    "complaints": _count("complaint"),
    "open_complaints": _count("complaint", "still open"),
    "campaign_responses": _count("campaign response"),
    "referrals_made": _count("referral"),
    "products_held": _products,
    "tenure_days": _tenure,
    "digital_share": _share,
    "avg_branch_wait_seconds": _wait,
    "avg_satisfaction": _satisfaction,
    "txn_30d_vs_3m": _vs_usual("transactions in the last 30 days", "the 2 months before"),
    "txn_30d_vs_6m": _vs_usual("transactions in the last 30 days", "the 5 months before"),
    "interactions_30d_vs_3m": _vs_usual("contacts in the last 30 days", "the 2 months before"),
    "interactions_30d_vs_6m": _vs_usual("contacts in the last 30 days", "the 5 months before"),
    "active_days_30d_vs_6m": _vs_usual("active days in the last 30 days", "the 5 months before"),
    "activity_slope_3m": _slope,
    "trb_vs_3m_avg": _vs_usual("balance", "its 3-month average"),
    "trb_vs_6m_avg": _vs_usual("balance", "its 6-month average"),
    "trb_drawdown_6m": _drawdown,
    "competitor_outflow_vs_trb_3m": _per_balance,
    "competitor_transfer_share_3m": _transfer_share,
    "inbound_calls_30d": _count("call", "to the contact centre in the last 30 days"),
    "unresolved_calls_90d": _count("call", "not resolved at first contact in the last 90 days"),
    "complaint_calls_90d": _count("complaint call", "to the contact centre in the last 90 days"),
    "age_band": _band("age band"),
    "income_band_cny": _band("income band (CNY)"),
}

_UNITS = {"hkd": "(HKD)", "cny": "(CNY)", "pct": "%", "avg": "average", "txn": "transaction", "num": "number"}


def humanize(name: str) -> str:
    """A readable label for a column without wording: ``days_since_kyc_hkd`` -> ``Days since kyc (HKD)``."""
    words = []
    for part in str(name).replace("-", "_").split("_"):
        if not part:
            continue
        if part[:-1].isdigit() and part[-1] in "dmy":  # 30d -> 30 days
            part = f"{part[:-1]} {dict(d='days', m='months', y='years')[part[-1]]}"
        words.append(_UNITS.get(part.lower(), part))
    text = " ".join(words) or "unnamed feature"
    return text[0].upper() + text[1:]


def describe(feature: str, value: Any) -> str:
    """The reason text for ``feature`` at ``value`` (the wording table, else the fallback)."""
    word = WORDING.get(feature)
    if word is not None:
        return word(value)
    n = _num(value)
    if n is not None:
        shown = f"{n:,.0f}" if n == int(n) else f"{n:,.4g}"
    elif value is None or (isinstance(value, float) and math.isnan(value)):
        shown = "missing"
    else:
        shown = str(value)
    return f"{humanize(feature)}: {shown}"


@dataclass(frozen=True)
class Reason:
    feature: str  # the source column
    text: str
    contribution: float  # log-odds the feature adds to the customer's margin (mean over members)


def _members(model) -> list:
    """The fitted pipelines whose outputs the model averages (one if not calibrated)."""
    calibrated = getattr(model, "calibrated_classifiers_", None)
    return [c.estimator for c in calibrated] if calibrated is not None else [model]


def _source_map(preprocess, features: Sequence[str]) -> np.ndarray:
    """For each output column of a fitted ``ColumnTransformer``, the position of its source column."""
    from sklearn.pipeline import Pipeline

    position = {name: i for i, name in enumerate(features)}
    width = sum(s.stop - s.start for s in preprocess.output_indices_.values())
    out = np.full(width, -1, dtype=np.int64)
    for name, transformer, cols in preprocess.transformers_:
        block = preprocess.output_indices_[name]
        if name == "remainder" or transformer == "drop" or block.stop == block.start:
            continue
        cols = list(cols)
        last = transformer.steps[-1][1] if isinstance(transformer, Pipeline) else transformer
        if transformer == "passthrough" or block.stop - block.start == len(cols):
            sources = cols
        elif hasattr(last, "categories_"):  # one-hot: names say which input column made each
            names = last.get_feature_names_out([f"{i}{_SEP}" for i in range(len(cols))])
            sources = [cols[int(n.split(_SEP)[0])] for n in names]
        else:
            raise ValueError(f"cannot map the outputs of transformer {name!r} back to its columns")
        out[block] = [position[c] for c in sources]
    if (out < 0).any():
        raise ValueError("some transformed columns have no source column")
    return out


class ReasonExplainer:
    """Tree SHAP of the champion, per source column, and the top reasons per row."""

    def __init__(self, model, numeric: Sequence[str], categorical: Sequence[str]) -> None:
        import shap

        self.features = [*numeric, *categorical]
        self._parts = []
        for pipeline in _members(model):
            preprocess, trees = pipeline.steps[0][1], pipeline.steps[-1][1]
            if type(trees).__name__ != "HistGradientBoostingClassifier":
                raise TypeError(
                    f"reason codes expect HistGradientBoostingClassifier, got {type(trees).__name__}"
                )
            mapping = _source_map(preprocess, self.features)
            self._parts.append((preprocess, shap.TreeExplainer(trees), mapping))

    def contributions(self, frame: pd.DataFrame) -> np.ndarray:
        """(rows, features) SHAP values in log-odds, summed per source column, mean over members."""
        total = np.zeros((len(frame), len(self.features)))
        X = frame[self.features]
        for preprocess, explainer, mapping in self._parts:
            values = np.asarray(explainer.shap_values(preprocess.transform(X)), dtype="float64")
            if values.ndim == 3:  # some shap versions give (rows, outputs, classes)
                values = values[..., -1]
            per_source = np.zeros_like(total)
            np.add.at(per_source.T, mapping, values.T)
            total += per_source
        return total / len(self._parts)

    def reasons(self, frame: pd.DataFrame, top: int = TOP) -> list[list[Reason]]:
        """Per row, up to ``top`` features with a positive contribution, largest first."""
        phi = self.contributions(frame)
        order = np.argsort(-phi, axis=1, kind="stable")[:, :top]
        values = frame[self.features].to_numpy(dtype=object)
        out = []
        for i, row in enumerate(order):
            out.append(
                [
                    Reason(self.features[j], describe(self.features[j], values[i, j]), float(phi[i, j]))
                    for j in row
                    if phi[i, j] > 1e-12
                ]
            )
        return out
