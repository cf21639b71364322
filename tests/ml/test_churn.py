"""The churn trainer, its evaluation, artifacts, registry and CLI, on synthetic data only.

One model is trained per module (``trained``) and shared; the data come from
``make_classification`` with a month column, a segment that shifts the churn rate, a noise
column and a customer id.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from crm.ml.churn import detect_columns, train
from crm.ml.evaluation import (
    calibration_table,
    evaluate,
    expected_calibration_error,
    gains_table,
    lift_and_capture,
)
from crm.ml.registry import (
    ArtifactIntegrityError,
    UntrustedArtifactError,
    load_artifact,
    register_churn,
    save_artifact,
)
from crm.ml.splits import forward_chaining_splits, split_frame
from crm.settings import get_settings

FAST = {"max_iter": 30, "cv_splits": 2}  # enough on 2,000 rows; keeps each test quick


def synthetic(n: int = 2000, seed: int = 0, months: int = 12) -> pd.DataFrame:
    """Churn driven by six of eight features (no two of them suffice) and by the segment."""
    X, y = make_classification(
        n, 8, n_informative=6, n_redundant=0, weights=[0.85], flip_y=0.01, class_sep=0.8, random_state=seed
    )
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(8)])
    frame.loc[rng.random(n) < 0.03, "f1"] = np.nan  # HGB routes missing values itself
    frame["segment"] = np.where(
        y == 1,
        rng.choice(["mass", "premier", "private"], n, p=[0.7, 0.25, 0.05]),
        rng.choice(["mass", "premier", "private"], n, p=[0.4, 0.4, 0.2]),
    )
    frame["noise"] = rng.normal(size=n)
    frame["month"] = pd.date_range("2025-01-01", periods=months, freq="MS")[rng.integers(0, months, n)]
    frame["customer_id"] = [f"C{i:07d}" for i in range(n)]
    frame["churned"] = y
    return frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic()


@pytest.fixture(scope="module")
def trained(frame):
    return train(frame, "churned", id_column="customer_id", time_column="month", **FAST)


def _fitted_columns(result) -> list[str]:
    pipeline = result.model.calibrated_classifiers_[0].estimator
    return [
        c for _, _, cols in pipeline.named_steps["preprocess"].transformers_ if _ != "remainder" for c in cols
    ]


def test_pipeline_detects_column_kinds_and_excludes_ids(frame, trained):
    extra = frame.head(200).assign(
        account_ref=[f"A{i}" for i in range(200)],  # unique text: an id under another name
        is_staff=[i % 7 == 0 for i in range(200)],
        constant=1.0,
        opened=pd.date_range("2020-01-01", periods=200, freq="D"),
    )
    kinds = detect_columns(extra, "churned", id_column="customer_id", time_column="month")
    assert kinds.numeric == [*(f"f{i}" for i in range(8)), "noise"]
    assert kinds.categorical == ["segment", "is_staff"]
    assert kinds.excluded == {
        "churned": "label",
        "customer_id": "id",
        "month": "time",
        "account_ref": "unique on almost every row (an id?)",
        "constant": "constant",
        "opened": "datetime",
    }
    fitted = _fitted_columns(trained)
    assert set(fitted) == {*(f"f{i}" for i in range(8)), "noise", "segment"}
    assert not {"customer_id", "month", "churned"} & set(fitted)


def test_out_of_time_split_has_no_overlap_of_periods(frame, trained):
    y = frame["churned"].to_numpy()
    split = split_frame(frame, y, "month", test_periods=2, gap_periods=1)
    months = frame["month"]
    train_m, test_m = set(months.iloc[split.train_index]), set(months.iloc[split.test_index])
    assert not train_m & test_m
    assert max(train_m) < min(test_m)
    assert sorted(test_m) == sorted(months.unique())[-2:]
    assert split.gap_periods == [sorted(months.unique())[-3]]
    assert not set(split.gap_periods) & (train_m | test_m)
    # the trained model: test rows are the latest periods, none of them in training
    w = trained.split.window()
    assert w["split"] == "out-of-time" and w["train"][1] < w["test"][0]
    assert set(trained.test_frame["month"]).isdisjoint(months.iloc[trained.split.train_index])
    assert 0.15 <= w["test_rows"] / len(frame) <= 0.45
    # the tuning folds chain forward: every validation period follows every training period
    for tr, va in forward_chaining_splits(months.iloc[split.train_index].sort_values().to_numpy(), 3):
        ordered = months.iloc[split.train_index].sort_values().to_numpy()
        assert ordered[tr].max() < ordered[va].min()


def test_without_a_time_column_the_holdout_is_stratified(frame):
    y = frame["churned"].to_numpy()
    split = split_frame(frame, y, None, test_size=0.25)
    assert split.kind == "stratified holdout"
    assert not set(split.train_index) & set(split.test_index)
    assert abs(y[split.test_index].mean() - y[split.train_index].mean()) < 0.01


def test_metrics_in_range_and_the_model_beats_the_baseline(trained):
    for metrics in (trained.metrics, trained.baseline_metrics):
        for key in ("roc_auc", "pr_auc", "brier", "top_decile_capture", "ece", "base_rate"):
            assert 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
        assert 0.0 <= metrics["top_decile_lift"] <= 1 / metrics["base_rate"]
    assert trained.metrics["n"] == trained.baseline_metrics["n"] == len(trained.test_frame)
    assert len(trained.baseline_columns) == 2
    assert trained.metrics["pr_auc"] > trained.baseline_metrics["pr_auc"] + 0.1
    assert trained.metrics["roc_auc"] > trained.baseline_metrics["roc_auc"]
    assert trained.metrics["top_decile_lift"] > trained.baseline_metrics["top_decile_lift"]
    assert trained.metrics["ece"] < 0.1  # calibrated despite class_weight="balanced"
    assert len(trained.search) >= 4 and trained.search["cv_pr_auc"].is_monotonic_decreasing


def test_lift_and_capture_on_a_hand_made_example():
    y = [1, 0, 1, 0, 0, 0, 0, 0, 0, 1]  # 3 churners in 10: base rate 0.3
    p = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    lift, capture = lift_and_capture(y, p, 0.1)  # top decile = the first row, a churner
    assert capture == pytest.approx(1 / 3) and lift == pytest.approx(1 / 0.3)
    lift, capture = lift_and_capture(y, p, 0.3)  # rows 1-3: two churners
    assert capture == pytest.approx(2 / 3) and lift == pytest.approx((2 / 3) / 0.3)
    gains = gains_table(y, p)
    assert gains["positives"].tolist() == [1, 0, 1, 0, 0, 0, 0, 0, 0, 1]
    assert gains["cumulative_capture"].iloc[-1] == pytest.approx(1.0)
    assert evaluate(y, p)["top_decile_capture"] == pytest.approx(1 / 3)
    # calibration: two bins used; ECE = 0.5 * |0.05 - 0.5| + 0.5 * |0.95 - 1|
    table = calibration_table([0, 1, 1, 1], [0.05, 0.05, 0.95, 0.95])
    assert table["count"].tolist() == [2, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    assert table.loc[0, "observed_rate"] == 0.5 and table.loc[9, "mean_predicted"] == pytest.approx(0.95)
    assert expected_calibration_error([0, 1, 1, 1], [0.05, 0.05, 0.95, 0.95]) == pytest.approx(0.25)


def test_skops_round_trip_gives_identical_predictions(trained, tmp_path):
    artifact = save_artifact(trained.model, "churn", "v1", home=tmp_path)
    assert artifact.path == tmp_path / "models" / "churn" / "v1.skops"
    assert artifact.path.read_bytes()[:2] == b"PK"  # a skops zip, not a pickle
    loaded = load_artifact(artifact.path, artifact.sha256)
    np.testing.assert_array_equal(
        loaded.predict_proba(trained.X_test), trained.model.predict_proba(trained.X_test)
    )
    with pytest.raises(FileExistsError):
        save_artifact(trained.model, "churn", "v1", home=tmp_path)


def test_a_modified_artifact_is_refused(trained, tmp_path):
    artifact = save_artifact(trained.model, "churn", "v1", home=tmp_path)
    with open(artifact.path, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ArtifactIntegrityError) as caught:
        load_artifact(artifact.path, artifact.sha256)
    message = str(caught.value)
    assert str(artifact.path) in message and artifact.sha256[:12] in message
    assert caught.value.actual[:12] in message and caught.value.actual != artifact.sha256

    # an intact file holding a type outside sklearn/numpy is refused too (never loaded)
    from sklearn.preprocessing import FunctionTransformer

    other = save_artifact(FunctionTransformer(func=json.dumps), "other", "v1", home=tmp_path)
    with pytest.raises(UntrustedArtifactError, match=r"json\.dumps"):
        load_artifact(other.path, other.sha256)


def test_a_weakened_challenger_stays_challenger(warehouse, frame, trained, tmp_path):
    from crm.warehouse import connect

    strong = save_artifact(trained.model, "churn", "v-strong", home=tmp_path)
    # the weak one sees one column of pure noise (same rows, same out-of-time test set)
    weak_result = train(
        frame, "churned", id_column="customer_id", time_column="month",
        exclude=[c for c in frame.columns if c not in ("noise", "churned", "customer_id", "month")],
        param_grid=[{"max_leaf_nodes": 7}], **FAST,
    )  # fmt: skip
    assert weak_result.columns.features == ["noise"]
    weak = save_artifact(weak_result.model, "churn", "v-weak", home=tmp_path)
    with connect("crm_ml", autocommit=True) as conn:
        first = register_churn(conn, trained, strong, "v-strong")
        assert first.status == "champion" and "first version" in first.reason
        second = register_churn(conn, weak_result, weak, "v-weak")
        rows = dict(
            conn.execute("select version, status from ml.model_versions where name = 'churn'").fetchall()
        )
        reason, metrics = conn.execute(
            "select status_reason, metrics from ml.model_versions where version = 'v-weak'"
        ).fetchone()
    assert second.status == "challenger"
    assert second.champion_version == "v-strong"
    assert second.champion_score > second.score + 0.2  # the champion re-scored on the same rows
    assert "stays challenger" in reason and "v-strong" in reason
    assert rows == {"v-strong": "champion", "v-weak": "challenger"}
    assert metrics["model"]["pr_auc"] == pytest.approx(weak_result.metrics["pr_auc"])
    assert metrics["baseline"]["roc_auc"] == pytest.approx(weak_result.baseline_metrics["roc_auc"])


def test_a_better_model_replaces_the_champion_which_is_retired(warehouse, frame, trained, tmp_path):
    from crm.warehouse import connect

    weak_result = train(
        frame,
        "churned",
        id_column="customer_id",
        time_column="month",
        exclude=[
            c
            for c in frame.columns
            if c not in ("f0", "f1", "f2", "noise", "churned", "customer_id", "month")
        ],
        baseline_columns=["noise"],
        param_grid=[{"max_leaf_nodes": 7}],
        **FAST,
    )  # fmt: skip  (a baseline on noise: v1 clears the floor, so it becomes the champion v2 meets)
    weak = save_artifact(weak_result.model, "churn", "v1", home=tmp_path)
    strong = save_artifact(trained.model, "churn", "v2", home=tmp_path)
    with connect("crm_ml", autocommit=True) as conn:
        register_churn(conn, weak_result, weak, "v1", trained_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        decision = register_churn(conn, trained, strong, "v2")
        rows = dict(conn.execute("select version, status from ml.model_versions").fetchall())
        window, sha = conn.execute(
            "select training_window, artifact_sha256 from ml.model_versions where version = 'v2'"
        ).fetchone()
    assert decision.status == "champion" and "beats champion v1" in decision.reason
    assert rows == {"v1": "retired", "v2": "champion"}
    assert window["split"] == "out-of-time" and window["time_column"] == "month"
    assert sha == strong.sha256


def test_crm_ml_train_churn_writes_the_report_without_a_warehouse(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from crm.cli import app

    monkeypatch.setenv("CRM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("CRM_WAREHOUSE_URL", raising=False)
    get_settings.cache_clear()
    data = synthetic(1500, seed=3)
    data["month"] = data["month"].dt.strftime("%Y-%m")  # as a bank's extract would write it
    csv = tmp_path / "extract.csv"
    data.to_csv(csv, index=False)
    try:
        result = CliRunner().invoke(
            app,
            ["ml", "train", "churn", "--csv", str(csv), "--label", "churned", "--id", "customer_id",
             "--time", "month", "--max-iter", "30"],
        )  # fmt: skip
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "out-of-time test: trained on 2025-01-01.." in result.output
    assert "not registered: no WAREHOUSE_URL and no running embedded warehouse" in result.output
    reports = list((tmp_path / "home" / "models" / "churn").glob("*.html"))
    artifacts = list((tmp_path / "home" / "models" / "churn").glob("*.skops"))
    assert len(reports) == 1 and len(artifacts) == 1
    assert f"report {reports[0]}" in result.output
    assert reports[0].stem == artifacts[0].stem
    page = reports[0].read_text()
    for title in (
        "ROC curve",
        "Precision-recall curve",
        "Reliability",
        "Cumulative gains",
        "Permutation importance",
    ):
        assert title in page
    assert "<script src=" not in page  # plotly.js inlined: opens offline
    assert page.count("Baseline") >= 1 and "PR AUC (average precision)" in page
    for line in ("roc_auc", "pr_auc", "brier", "top_decile_lift"):
        assert line in result.output


def test_the_ml_cli_is_cheap_to_import_and_listed_with_its_own_help():
    code = (
        "import sys, crm.ml.cli\n"
        "heavy = [m for m in ('pandas', 'sklearn', 'skops', 'plotly', 'psycopg') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from crm.cli import STAGES, load_stage\n"
        "command = load_stage('ml')\n"
        "assert STAGES['ml'].help == command.help.strip().splitlines()[0], command.help\n"
        "assert 'churn' in command.commands['train'].commands\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-800:]


def test_crm_ml_train_churn_registers_the_version_with_a_warehouse(warehouse, tmp_path):
    """No time column this time: a stratified holdout, said so; the version is registered."""
    from typer.testing import CliRunner

    from crm.cli import app
    from crm.warehouse import connect

    csv = tmp_path / "extract.csv"
    synthetic(1500, seed=4).drop(columns="month").to_csv(csv, index=False)
    result = CliRunner().invoke(
        app,
        ["ml", "train", "churn", "--csv", str(csv), "--label", "churned", "--id", "customer_id",
         "--max-iter", "30", "--name", "churn_cli"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "no time column: stratified holdout" in result.output
    assert "registered in ml.model_versions via WAREHOUSE_URL: churn_cli " in result.output
    assert "champion (first version" in result.output
    with connect("crm_ml") as conn:
        path, sha, status, window = conn.execute(
            "select artifact_path, artifact_sha256, status, training_window from ml.model_versions"
            " where name = 'churn_cli'"
        ).fetchone()
    assert status == "champion" and window["split"] == "stratified holdout"
    assert load_artifact(path, sha) is not None


def test_forward_chaining_folds_leave_the_label_horizon_out_when_there_is_room():
    """Purged folds: ``gap`` periods between each fold's training and validation months, as
    the out-of-time split leaves the label horizon out; with too short a history the gap
    shrinks rather than leaving no fold."""
    months = np.repeat(np.arange(8), 5)  # 8 periods, 5 rows each
    for train_idx, val_idx in forward_chaining_splits(months, 3, gap=2):
        assert months[train_idx].max() + 2 < months[val_idx].min()
    plain = forward_chaining_splits(months, 3)
    assert any(months[t].max() + 1 == months[v].min() for t, v in plain)
    short = forward_chaining_splits(np.repeat(np.arange(3), 5), 2, gap=3)
    assert short and all(len(t) and len(v) for t, v in short)


def test_a_model_its_own_baseline_beats_never_becomes_champion(warehouse, frame, tmp_path):
    from crm.warehouse import connect

    # the model sees one column of noise; its baseline regresses on two informative columns
    noise_only = train(
        frame, "churned", id_column="customer_id", time_column="month",
        exclude=[c for c in frame.columns if c not in ("noise", "churned", "customer_id", "month")],
        baseline_columns=["f0", "f2"], param_grid=[{"max_leaf_nodes": 7}], **FAST,
    )  # fmt: skip
    assert noise_only.baseline_metrics["pr_auc"] > noise_only.metrics["pr_auc"]
    artifact = save_artifact(noise_only.model, "churn", "v-noise", home=tmp_path)
    with connect("crm_ml", autocommit=True) as conn:
        decision = register_churn(conn, noise_only, artifact, "v-noise")
        rows = conn.execute("select status, status_reason from ml.model_versions").fetchall()
    assert decision.status == "challenger" and decision.champion_version is None
    assert rows == [("challenger", decision.reason)]
    assert "does not beat its baseline" in decision.reason
