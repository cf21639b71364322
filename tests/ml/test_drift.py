"""Drift (crm.ml.drift): PSI of each model feature and of the score vs the training sample,
written to ``ml.drift`` by daily scoring; same synthetic extract and trained model as the
reason-code tests (see test_explain).
"""

from __future__ import annotations

import datetime as dt
import logging
import math

import pytest

from .test_explain import bank_extract, load_snapshot, register

FAST = {"max_iter": 40, "cv_splits": 2, "param_grid": [{"max_leaf_nodes": 15, "min_samples_leaf": 20}]}
DAY, SHIFTED = dt.date(2026, 9, 30), dt.date(2026, 10, 31)


@pytest.fixture(scope="module")
def extract():
    return bank_extract(n=2000)


@pytest.fixture(scope="module")
def trained(extract):
    from crm.ml.churn import train

    return train(
        extract, "churned", id_column="customer_id", time_column="month_start", exclude=["as_of_date"], **FAST
    )


@pytest.fixture(scope="module")
def training_rows(extract, trained):
    return extract.iloc[trained.split.train_index].reset_index(drop=True)


def _shift(frame):
    """Customers gone quiet: recency up by four months (the rest unchanged)."""
    return frame.assign(recency_days=frame["recency_days"] + 120)


def test_psi_formula_and_status():
    from crm.ml.drift import psi, status

    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    expected = 0.25 * math.log(0.75 / 0.5) - 0.25 * math.log(0.25 / 0.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected)
    assert math.isfinite(psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]))  # an empty reference bin is floored
    assert [status(v) for v in (0.0, 0.099, 0.1, 0.2499, 0.25, 3.0)] == [
        "ok", "ok", "warning", "warning", "alert", "alert",
    ]  # fmt: skip


def test_psi_is_zero_on_the_training_sample_and_large_for_a_shifted_feature(trained, extract, training_rows):
    from crm.ml.drift import SCORE, DriftAccumulator, reference_from_training

    reference = reference_from_training(trained, extract)
    assert reference["rows"] == len(training_rows) and set(reference["features"]) == set(
        trained.columns.features
    )
    for profile in [*reference["features"].values(), reference["score"]]:
        assert math.isclose(sum(profile["shares"]), 1.0)
    # ties collapse: outflow is 0 for ~70 % of customers, so its zeros share one bin
    assert reference["features"]["outflow_to_competitors_hkd"]["shares"][0] > 0.6

    X = training_rows[trained.columns.features]
    same = DriftAccumulator(reference)
    for start in range(0, len(X), 333):  # chunked, as scoring feeds it
        part = X.iloc[start : start + 333]
        same.update(part, trained.model.predict_proba(part)[:, 1])
    assert same.rows == len(X)
    assert all(r.psi < 1e-9 and r.status == "ok" for r in same.results())

    shifted = DriftAccumulator(reference)
    moved = _shift(X)
    shifted.update(moved, trained.model.predict_proba(moved)[:, 1])
    by_feature = {r.feature: r for r in shifted.results()}
    assert by_feature["recency_days"].psi > 1.0 and by_feature["recency_days"].status == "alert"
    assert all(r.psi < 1e-9 for f, r in by_feature.items() if f not in ("recency_days", SCORE))
    assert by_feature[SCORE].psi > 0.1  # inactive customers score higher: the score drifts too


def _drift(day):
    from crm.warehouse import connect

    with connect() as conn:
        return conn.execute(
            "select feature, kind, psi, status, rows, model_version from ml.drift where business_day = %s"
            " order by feature",
            (day,),
        ).fetchall()


def test_scoring_writes_drift_per_day_without_duplicates(
    warehouse, db, trained, extract, training_rows, tmp_path, caplog
):
    from crm.ml.drift import SCORE
    from crm.ml.scoring import score_churn

    load_snapshot(db, training_rows, DAY)
    load_snapshot(db, _shift(training_rows), SHIFTED)
    version = register(trained, extract, tmp_path)
    features = set(trained.columns.features)

    with caplog.at_level(logging.WARNING, logger="crm.ml"):
        same = score_churn(DAY, chunk=500, reasons=False)
    assert not same.reasons and same.chunks > 1
    rows = _drift(DAY)
    assert {r[0] for r in rows} == features | {SCORE} and len(rows) == len(features) + 1
    assert all(r[2] < 1e-6 and r[3] == "ok" and r[4] == len(training_rows) and r[5] == version for r in rows)
    assert not same.drift_alerts and "drift alert" not in caplog.text

    with caplog.at_level(logging.WARNING, logger="crm.ml"):
        moved = score_churn(SHIFTED, chunk=500, reasons=False)
    by_feature = {r[0]: r for r in _drift(SHIFTED)}
    assert by_feature["recency_days"][3] == "alert" and by_feature["recency_days"][2] > 1.0
    assert moved.drift_alerts[0] == "recency_days" and "recency_days" in moved.message
    assert "drift alert" in caplog.text and "recency_days" in caplog.text
    assert _drift(DAY) == rows  # the first day is untouched

    again = score_churn(SHIFTED, chunk=10_000, reasons=False)  # re-scoring replaces the day
    assert again.chunks == 1
    after = _drift(SHIFTED)
    assert len(after) == len(by_feature) and [r[:3] for r in after] == [r[:3] for r in by_feature.values()]


def test_a_champion_without_reference_is_scored_without_drift(
    warehouse, db, trained, extract, training_rows, tmp_path
):
    from crm.ml.scoring import score_churn

    load_snapshot(db, training_rows.head(300), DAY)
    register(trained, extract, tmp_path, reference=False)
    result = score_churn(DAY)
    assert result.rows == 300 and result.drift == () and _drift(DAY) == []
