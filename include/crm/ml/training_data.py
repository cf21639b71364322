"""The churn model's training frame, from the warehouse: features beside their labels.

One row per customer and monthly snapshot (``marts.ml_features_customer_monthly``) whose
label exists (``marts.ml_churn_labels.label_available``: the 90-day horizon has elapsed by
the last loaded day), read as ``crm_ml``, the role that trains and scores. The labels table
has row level security with a policy for ``crm_ml`` only, so BI sees none of it; the
features are readable through the marts' default privileges.

The frame is what :func:`crm.ml.churn.train` takes: ``customer_id`` (id, never a feature),
``month_start`` (the time column: the out-of-time split keeps whole months apart),
``churned`` (0/1 label) and every feature column as scoring reads them
(:mod:`crm.ml.scoring`: numeric as float, the rest as text), so the registered feature
list is what ``crm ml score`` finds in the features table. Only the label is taken from
the labels table: its ``churn_reason`` says how the customer churned, a leak.

Only customers holding a product on the snapshot date are kept (``products_held > 0``):
the label calls everyone else "not churned" by definition (nothing left to lose), and
those rows would teach the model nothing but that rule while inflating its ROC AUC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from crm.settings import Settings

__all__ = [
    "ID_COLUMN",
    "LABEL_COLUMN",
    "TIME_COLUMN",
    "TrainingData",
    "churn_horizon_days",
    "horizon_gap_periods",
    "read_training_frame",
]

ID_COLUMN = "customer_id"
TIME_COLUMN = "month_start"
LABEL_COLUMN = "churned"
# The one-line baseline every warehouse-trained model is judged against (issue: logistic
# regression on recency and the 30-day TRB ratio). Fixed, not chosen from the data: a
# baseline that picked the best two of today's features would move with every feature added.
BASELINE_COLUMNS = ("recency_days", "trb_ratio_30d")
# Not features: the snapshot date (the time column says the month) and the key.
_NOT_FEATURES = ("as_of_date",)

QUERY = """
select features.*, labels.churned::int as churned
from marts.ml_features_customer_monthly as features
inner join marts.ml_churn_labels as labels
    on features.customer_id = labels.customer_id and features.month_start = labels.month_start
where labels.label_available and {population}
order by features.month_start, features.customer_id
"""


@dataclass(frozen=True)
class TrainingData:
    frame: pd.DataFrame
    id_column: str = ID_COLUMN
    time_column: str = TIME_COLUMN
    label: str = LABEL_COLUMN
    baseline_columns: tuple[str, ...] = BASELINE_COLUMNS

    def describe(self) -> str:
        months = self.frame[self.time_column]
        if months.empty:
            return "no labelled snapshot"
        return (
            f"{len(self.frame):,} labelled customer-months, {months.nunique()} months"
            f" ({months.min():%Y-%m}..{months.max():%Y-%m}), churn rate {self.frame[self.label].mean():.2%}"
        )


@lru_cache(maxsize=1)
def churn_horizon_days() -> int:
    """The dbt var ``churn_horizon_days`` (dbt_project.yml), the label's horizon."""
    import yaml

    from crm.dates import DBT_PROJECT

    return int(yaml.safe_load(DBT_PROJECT.read_text(encoding="utf-8"))["vars"]["churn_horizon_days"])


def horizon_gap_periods(horizon_days: int | None = None) -> int:
    """Monthly periods to leave out between training and test: a training month's label is
    observed over the next ``horizon_days``, so without a gap its window overlaps the test
    months and the split is not out of time (a month end plus 90 days is in the third
    month after: three periods)."""
    return math.ceil((horizon_days or churn_horizon_days()) / 30)


def read_training_frame(
    settings: Settings | None = None, *, at_risk_only: bool = True, conn=None
) -> TrainingData:
    """Every labelled customer-month (see the module docstring) as ``crm_ml``; ``conn``: an
    open connection to use instead (as that role)."""
    import pandas as pd

    from crm.ml.scoring import _NUMERIC_OIDS, _frame, _numeric_loaders
    from crm.warehouse import connect

    population = "features.products_held > 0" if at_risk_only else "true"
    query = QUERY.format(population=population)
    if conn is None:
        with connect("crm_ml", settings=settings) as own:
            return read_training_frame(settings, at_risk_only=at_risk_only, conn=own)
    with conn.cursor() as cur:
        _numeric_loaders(cur)
        cur.execute(query)
        names = [d.name for d in cur.description]
        numeric = {d.name for d in cur.description if d.type_code in _NUMERIC_OIDS}
        frame = _frame(cur.fetchall(), names, numeric)
    frame = frame.drop(columns=[c for c in _NOT_FEATURES if c in frame.columns])
    frame[TIME_COLUMN] = pd.to_datetime(frame[TIME_COLUMN])
    frame[LABEL_COLUMN] = frame[LABEL_COLUMN].astype("int64")
    return TrainingData(frame)
