"""The churn model's columns and pipelines: which columns are features (numeric,
categorical, excluded with the reason), the gradient-boosted pipeline and the one-line
logistic baseline. Used by :mod:`crm.ml.churn`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


@dataclass(frozen=True)
class ColumnKinds:
    numeric: list[str]
    categorical: list[str]
    excluded: dict[str, str]  # column -> why it is not a feature

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def detect_columns(
    frame: pd.DataFrame,
    label: str,
    id_column: str | None = None,
    time_column: str | None = None,
    exclude: Sequence[str] = (),
) -> ColumnKinds:
    """Numeric and categorical feature columns of ``frame``; the rest with the reason."""
    for name in (label, id_column, time_column, *exclude):
        if name is not None and name not in frame.columns:
            raise KeyError(f"column {name!r} not in the data (columns: {', '.join(map(str, frame.columns))})")
    excluded: dict[str, str] = {label: "label"}
    if id_column:
        excluded[id_column] = "id"
    if time_column:
        excluded[time_column] = "time"
    for name in exclude:
        excluded[name] = "excluded by the caller"
    numeric, categorical = [], []
    n = len(frame)
    for name in frame.columns:
        if name in excluded:
            continue
        s = frame[name]
        if s.nunique(dropna=True) <= 1:
            excluded[name] = "constant"
        elif pd.api.types.is_datetime64_any_dtype(s) or isinstance(s.dtype, pd.PeriodDtype):
            excluded[name] = "datetime"
        elif pd.api.types.is_bool_dtype(s):
            categorical.append(name)
        elif pd.api.types.is_numeric_dtype(s):
            numeric.append(name)
        elif n >= 50 and s.nunique(dropna=True) > 0.9 * n:
            excluded[name] = "unique on almost every row (an id?)"
        else:
            categorical.append(name)
    if not numeric and not categorical:
        raise ValueError("no feature column left after excluding label, id and time")
    return ColumnKinds(numeric, categorical, excluded)


def _preprocessor(
    numeric: list[str], categorical: list[str], *, for_trees: bool, min_frequency
) -> ColumnTransformer:
    cat = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            (
                "onehot",
                OneHotEncoder(handle_unknown="ignore", min_frequency=min_frequency, sparse_output=False),
            ),
        ]
    )
    if for_trees:
        num: Any = "passthrough"  # HGB needs no scaling and routes NaN itself
    else:
        num = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    transformers = []
    if numeric:
        transformers.append(("numeric", num, list(numeric)))
    if categorical:
        transformers.append(("categorical", cat, list(categorical)))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True)


def build_pipeline(
    columns: ColumnKinds,
    *,
    min_frequency: int | float = 20,
    random_state: int = 0,
    max_iter: int = 200,
    **params: Any,
) -> Pipeline:
    """The uncalibrated churn pipeline: preprocessing + ``HistGradientBoostingClassifier``."""
    return Pipeline(
        [
            (
                "preprocess",
                _preprocessor(
                    columns.numeric, columns.categorical, for_trees=True, min_frequency=min_frequency
                ),
            ),
            (
                "classifier",
                HistGradientBoostingClassifier(
                    class_weight="balanced", max_iter=max_iter, random_state=random_state, **params
                ),
            ),
        ]
    )


def _baseline_pipeline(columns: list[str], frame: pd.DataFrame) -> Pipeline:
    numeric = [
        c
        for c in columns
        if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
    ]
    categorical = [c for c in columns if c not in numeric]
    return Pipeline(
        [
            ("preprocess", _preprocessor(numeric, categorical, for_trees=False, min_frequency=20)),
            ("classifier", LogisticRegression(max_iter=1000)),
        ]
    )


def most_predictive_numeric(X: pd.DataFrame, y: np.ndarray, numeric: list[str], k: int = 2) -> list[str]:
    """The ``k`` numeric columns whose values alone rank ``y`` best (|ROC AUC - 0.5|)."""
    strength = {}
    for name in numeric:
        values = X[name].astype(float)
        values = values.fillna(values.median())
        strength[name] = abs(roc_auc_score(y, values) - 0.5) if values.nunique() > 1 else 0.0
    return sorted(strength, key=lambda c: -strength[c])[:k]
