"""Lifetime value from churn scores (crm.ml.clv), on the small bank built by dbt."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from .bank import DAYS, START

DAY = START + dt.timedelta(days=DAYS - 2)


def _score(probability_of) -> dict[str, float]:
    """Write a churn score for every customer of the day's customer_360 (as crm_ml)."""
    from crm.warehouse import connect

    with connect("crm_ml", autocommit=True) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "select customer_id from marts.customer_360 where snapshot_date = %s", (DAY,)
            )
        ]
        scores = {c: probability_of(i) for i, c in enumerate(sorted(ids))}
        with conn.cursor().copy(
            "copy ml.churn_scores (customer_id, as_of_date, churn_probability, model_version) from stdin"
        ) as copy:
            for customer, p in scores.items():
                copy.write_row((customer, DAY, p, "v1"))
    return scores


def _margins() -> dict[str, float]:
    from crm.warehouse import connect

    with connect("crm_ml") as conn:
        rows = conn.execute(
            "select customer_id, profit_annualised_hkd from marts.customer_360 where snapshot_date = %s",
            (DAY,),
        )
        return {c: float(m) / 12 for c, m in rows}


def _clv() -> dict[str, float]:
    from crm.warehouse import connect

    with connect("crm_ml") as conn:
        rows = conn.execute("select customer_id, clv_hkd from ml.clv_scores where as_of_date = %s", (DAY,))
        return {c: float(v) for c, v in rows}


def test_clv_is_the_discounted_margin_over_the_survival_the_churn_model_gives(warehouse):
    from crm.ml.clv import score_clv
    from crm.project_vars import dbt_vars

    rng = np.random.default_rng(3)
    scores = _score(lambda i: float(rng.choice([0.0, 1.0, rng.uniform(0.01, 0.9)], p=[0.1, 0.1, 0.8])))
    margins = _margins()
    result = score_clv(DAY, "v1")
    assert result.rows == len(scores) > 100
    clv = _clv()
    v = dbt_vars()
    months, rate, horizon = v["clv_horizon_months"], v["clv_monthly_discount_rate"], v["churn_horizon_days"]
    for customer, p in scores.items():
        survive = (1 - p) ** (30.4375 / horizon)
        expected = sum(margins[customer] * survive**t / (1 + rate) ** t for t in range(1, months + 1))
        assert clv[customer] == pytest.approx(expected, abs=0.01), customer
    certain = [c for c, p in scores.items() if p == 1.0]
    assert certain and all(clv[c] == 0 for c in certain), "a certain churner has no future margin"
    safe = [c for c, p in scores.items() if p == 0.0 and margins[c] > 0]
    assert all(clv[c] < margins[c] * months for c in safe), "discounting lowers even a safe customer's value"


def test_rescoring_a_day_replaces_its_clv_and_the_marts_use_it(warehouse):
    from crm.ml.clv import score_clv
    from crm.transform import run_dbt
    from crm.warehouse import connect

    _score(lambda i: 0.05 + (i % 10) / 20)
    first = score_clv(DAY, "v1")
    again = score_clv(DAY, "v1")
    assert again.rows == first.rows
    with connect("crm_ml") as conn:
        total = conn.execute("select count(*) from ml.clv_scores where as_of_date = %s", (DAY,)).fetchone()[0]
    assert total == first.rows, "one CLV per customer, day and version"

    run_dbt(
        ["build", "--select", "source:ml+", "--exclude-resource-type", "unit_test"],
        extra_env={"CRM_RUN_DATE": DAY.isoformat()},
    )
    with connect("crm_transformer") as conn:
        used, segmented = conn.execute(
            "select count(*) filter (where value_from_clv), count(*) from marts.customer_segments where snapshot_date = %s",
            (DAY,),
        ).fetchone()
    assert segmented > 0 and used == first.rows, "the value pyramid and LV quadrant use the CLV"
