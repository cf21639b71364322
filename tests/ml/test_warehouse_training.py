"""The churn model trained on the warehouse's own labels, over a history built by crm.history.

One history per module (``history_warehouse`` in conftest: generated, loaded with the real
loader, built with dbt once over the range plus one features run per month end). The
tests read its training frame as crm_ml, train on it out of time, and train and register
through ``crm ml train churn`` without --csv. (test_history_equivalence.py checks that the
history build writes the same feature snapshots as building every day in turn.)
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import psycopg
import pytest
from typer.testing import CliRunner

from crm.ml.churn import train
from crm.ml.training_data import horizon_gap_periods, read_training_frame
from crm.settings import get_settings

# One worker builds the shared history warehouse (tests/ml/conftest.py) once for both modules.
pytestmark = pytest.mark.xdist_group("history")

FAST = {"max_iter": 60, "cv_splits": 2}


@pytest.fixture(scope="module")
def data(history_warehouse):
    return read_training_frame()


@pytest.fixture(scope="module")
def trained(data):
    return train(
        data.frame,
        data.label,
        data.id_column,
        data.time_column,
        gap_periods=horizon_gap_periods(),
        test_periods=1,
        baseline_columns=data.baseline_columns,
        **FAST,
    )


def _owner(url: str):
    return psycopg.connect(url, autocommit=True)


def test_labels_only_where_the_horizon_elapsed(history_warehouse, data):
    horizon = dt.timedelta(days=90)
    frame = data.frame
    assert not frame.empty and set(frame[data.label].unique()) == {0, 1}
    with _owner(history_warehouse.url) as conn:
        last_loaded = conn.execute(
            "select max(business_date) from audit.load_log where status = 'loaded'"
        ).fetchone()[0]
        # Every snapshot whose horizon elapsed is labelled, none after; the frame takes them all.
        unlabelled_late, labelled_early = conn.execute(
            "select count(*) filter (where as_of_date + 90 > %s and label_available),"
            " count(*) filter (where as_of_date + 90 <= %s and not label_available)"
            " from marts.ml_churn_labels",
            (last_loaded, last_loaded),
        ).fetchone()
        expected = conn.execute(
            "select count(*) from marts.ml_features_customer_monthly"
            " where as_of_date + 90 <= %s and products_held > 0",
            (last_loaded,),
        ).fetchone()[0]
        months = conn.execute(
            "select count(distinct month_start) from marts.ml_features_customer_monthly"
        ).fetchone()[0]
    assert last_loaded == history_warehouse.last
    assert (unlabelled_late, labelled_early) == (0, 0)
    assert len(frame) == expected
    # One snapshot a month over the history, and the months left unlabelled are the horizon's.
    assert months == len(history_warehouse.result.month_ends) + 1
    newest = frame[data.time_column].max().date()
    assert newest + horizon - dt.timedelta(days=1) <= last_loaded
    assert "churn_reason" not in frame.columns and "label_available" not in frame.columns


def test_bi_reads_no_label_and_crm_ml_reads_them_all(history_warehouse, data):
    from crm.warehouse import connect

    with connect("crm_bi_reader") as conn:
        assert conn.execute("select count(*) from marts.ml_churn_labels").fetchone()[0] == 0
    with connect("crm_ml") as conn:
        seen = conn.execute("select count(*) from marts.ml_churn_labels where label_available").fetchone()[0]
    assert seen >= len(data.frame)


def test_out_of_time_split_keeps_test_months_out_of_training(data, trained):
    frame = data.frame
    split = trained.split
    assert split.kind == "out-of-time"
    train_rows, test_rows = frame.iloc[split.train_index], frame.iloc[split.test_index]
    train_keys = set(zip(train_rows[data.id_column], train_rows[data.time_column], strict=True))
    test_keys = set(zip(test_rows[data.id_column], test_rows[data.time_column], strict=True))
    assert train_keys and test_keys and not train_keys & test_keys
    assert train_rows[data.time_column].max() < test_rows[data.time_column].min()
    # The label horizon's months lie between them: the last training snapshot's label is
    # observed (its horizon ends) by the first test snapshot, as it would be in production.
    assert len(split.gap_periods) == horizon_gap_periods()
    last_train_snapshot = train_rows[data.time_column].max() + pd.offsets.MonthEnd(0)
    first_test_snapshot = test_rows[data.time_column].min() + pd.offsets.MonthEnd(0)
    assert last_train_snapshot + pd.Timedelta(days=90) <= first_test_snapshot


def test_model_ranks_churners_out_of_time_and_is_not_worse_than_the_baseline(trained):
    """Out of time, the model ranks churners above chance and is not significantly worse than
    the one-line baseline (logistic regression on recency and the 30-day TRB ratio).

    "Clearly better than the baseline" is judged on the 2,000 x 400 bank (docs/ml.md: ROC AUC
    0.624 against 0.405). This fixture's test month holds 15-20 churners, where the two swap
    places by chance: on three 1,000-customer samples of that bank with this fixture's
    months, model minus baseline ROC AUC was +0.02, -0.02 and -0.11. So the test asks what
    this size can show: a paired bootstrap of the test rows finds the model at or above the
    baseline in at least 5 % of resamples (it is not worse at the 5 % level)."""
    from sklearn.metrics import roc_auc_score

    m, b = trained.metrics, trained.baseline_metrics
    print(
        f"\nout-of-time test: model roc_auc {m['roc_auc']:.4f} pr_auc {m['pr_auc']:.4f}"
        f" lift@10 {m['top_decile_lift']:.2f}; baseline roc_auc {b['roc_auc']:.4f} pr_auc {b['pr_auc']:.4f}"
        f" lift@10 {b['top_decile_lift']:.2f} ({', '.join(trained.baseline_columns)}); window {trained.split.window()}"
    )
    y, p_model, p_base = trained.y_test, trained.p_test, trained.p_baseline
    assert np.isfinite(m["roc_auc"]) and y.sum() > 0
    assert trained.baseline_columns == ["recency_days", "trb_ratio_30d"]  # the one-line baseline
    assert m["roc_auc"] > 0.5
    rng = np.random.default_rng(0)
    at_least = []
    for _ in range(500):
        i = rng.integers(0, len(y), len(y))
        if y[i].min() == y[i].max():
            continue
        at_least.append(roc_auc_score(y[i], p_model[i]) >= roc_auc_score(y[i], p_base[i]))
    assert np.mean(at_least) >= 0.05, (
        f"the model is worse than the baseline in {1 - np.mean(at_least):.1%} of resamples"
    )


def test_cli_trains_from_the_warehouse_and_registers_a_version(history_warehouse, data):
    from crm.cli import app

    result = CliRunner().invoke(
        app,
        ["ml", "train", "churn", "--max-iter", "40", "--test-periods", "1", "--name", "churn_wh_test"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "training data from the warehouse" in result.output
    assert "out-of-time test" in result.output and "registered in ml.model_versions" in result.output
    with _owner(history_warehouse.url) as conn:
        rows = conn.execute(
            "select features, training_window, metrics, drift_reference from ml.model_versions"
            " where name = 'churn_wh_test'"
        ).fetchall()
    assert len(rows) == 1
    features, window, metrics, reference = rows[0]
    assert reference and "score" in reference, "the training profile daily scoring measures drift against"
    assert features["label"] == data.label and features["time"] == data.time_column
    assert data.id_column not in features["numeric"] + features["categorical"]
    assert window["split"] == "out-of-time" and window["train_rows"] + window["test_rows"] < len(data.frame)
    assert 0.5 < metrics["model"]["roc_auc"] <= 1.0
    assert get_settings().warehouse_url == history_warehouse.url
