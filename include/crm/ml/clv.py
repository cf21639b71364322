"""Customer lifetime value: expected discounted margin over a horizon, given churn risk.

For each customer the churn model scored on a day::

    CLV = m * sum_{t=1..H} ((1 - h) / (1 + r)) ** t

- ``m``: the monthly margin the relationship earns now (``marts.customer_360``'s
  annualised profit over its activity window / 12: balance margin + fees - cost to serve
  - marketing, in HKD). Negative for a loss-making relationship, and CLV with it.
- ``h``: the monthly churn hazard implied by the model's probability ``p`` of churning
  within the label horizon (dbt var ``churn_horizon_days``): ``1 - (1 - p) ** (30.4375 /
  horizon)``, so survival to month ``t`` is ``(1 - h) ** t``.
- ``H`` months (dbt var ``clv_horizon_months``, default 36) discounted at ``r`` a month
  (dbt var ``clv_monthly_discount_rate``).

The geometric sum has a closed form, so the whole day is one ``INSERT ... SELECT`` inside
PostgreSQL (no rows pulled into Python, any number of customers). Written as ``crm_ml`` to
``ml.clv_scores`` under version ``clv<H>m-<churn model version>``; re-running a day replaces
that day's rows. The marts read the latest CLV on or before their day (``value_from_clv``).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from crm.project_vars import dbt_vars
from crm.settings import Settings

log = logging.getLogger(__name__)

DAYS_PER_MONTH = 30.4375


@dataclass(frozen=True)
class ClvResult:
    day: dt.date
    rows: int
    model_version: str | None


def clv_version(churn_version: str, horizon_months: int) -> str:
    return f"clv{horizon_months}m-{churn_version}"


SCORE_SQL = """
with scores as (
    select customer_id, churn_probability, model_version
    from ml.churn_scores
    where as_of_date = %(day)s and model_version = %(churn_version)s
),
margin as (
    select distinct on (customer_id) customer_id, profit_annualised_hkd / 12.0 as monthly_margin
    from marts.customer_360
    where snapshot_date <= %(day)s and snapshot_date > %(day)s - 7
    order by customer_id, snapshot_date desc
),
terms as (
    select
        scores.customer_id,
        margin.monthly_margin,
        -- per-month survival x discount; p = 1 would make q = 0 (no future), p < 1 keeps q < 1
        (1 - scores.churn_probability) ^ (%(days_per_month)s / %(horizon_days)s) / (1 + %(rate)s) as q
    from scores
    join margin using (customer_id)
)
insert into ml.clv_scores (customer_id, as_of_date, clv_hkd, model_version)
select
    customer_id,
    %(day)s,
    round(
        (monthly_margin * case
            when q = 1 then %(months)s  -- no churn risk and no discounting: H months of margin
            else q * (1 - q ^ %(months)s) / (1 - q)
        end)::numeric,
        2
    ),
    %(version)s
from terms
"""


def score_clv(day: dt.date, churn_version: str, *, settings: Settings | None = None) -> ClvResult:
    """Write the day's CLV for every customer the churn model ``churn_version`` scored on ``day``."""
    from crm.warehouse import connect

    v = dbt_vars()
    months = int(v["clv_horizon_months"])
    rate = float(v["clv_monthly_discount_rate"])
    if months < 1 or not 0 <= rate < 1:
        raise ValueError("clv_horizon_months must be >= 1 and clv_monthly_discount_rate in [0, 1)")
    version = clv_version(churn_version, months)
    params = {
        "day": day,
        "churn_version": churn_version,
        "version": version,
        "months": months,
        "rate": rate,
        "days_per_month": DAYS_PER_MONTH,
        "horizon_days": float(v["churn_horizon_days"]),
    }
    with connect("crm_ml", settings=settings) as conn, conn.transaction():
        conn.execute("delete from ml.clv_scores where as_of_date = %s and model_version = %s", (day, version))
        rows = conn.execute(SCORE_SQL, params).rowcount
    log.info("clv day=%s version=%s rows=%d", day, version, rows)
    return ClvResult(day, rows, version)
