"""Churn reason codes (crm.ml.explain) written by daily scoring, and migration 0011.

A small churn model is really trained (``crm.ml.churn.train``) on a synthetic bank extract
with the mart's column names (so the wording table applies) plus one column the wording
table does not know; the rows are put into ``marts.ml_features_customer_monthly`` of a real
PostgreSQL database, the model is registered as champion and ``score_churn`` scores them.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

FAST = {"max_iter": 60, "cv_splits": 2, "param_grid": [{"max_leaf_nodes": 15, "min_samples_leaf": 20}]}
DAY = dt.date(2026, 9, 30)
NUMERIC = {
    "recency_days": "integer",
    "trb_ratio_30d": "numeric",
    "outflow_to_competitors_hkd": "numeric",
    "txn_count": "bigint",
    "products_held": "bigint",
    "complaints": "bigint",
    "avg_satisfaction": "numeric",
    "digital_share": "numeric",
    "days_since_kyc_review": "integer",  # not in the wording table: the fallback
}
CATEGORICAL = {"age_band": "text"}


def bank_extract(n: int = 3000, months: int = 8, seed: int = 1) -> pd.DataFrame:
    """One row per customer and month end; churn driven by inactivity, balance drop, outflow,
    few transactions, complaints and the age band (noise on top)."""
    rng = np.random.default_rng(seed)
    f = pd.DataFrame({"customer_id": [f"C{i:07d}" for i in range(n)]})
    f["month_start"] = pd.date_range("2026-01-01", periods=months, freq="MS")[rng.integers(0, months, n)]
    f["as_of_date"] = f["month_start"] + pd.offsets.MonthEnd(0)
    f["recency_days"] = rng.exponential(25, n).round()
    f["trb_ratio_30d"] = np.exp(rng.normal(0, 0.35, n)).round(4)
    f["outflow_to_competitors_hkd"] = np.where(
        rng.random(n) < 0.7, 0.0, np.exp(rng.normal(10, 1, n)).round(2)
    )
    f["txn_count"] = rng.poisson(12, n).astype(float)
    f["products_held"] = rng.integers(1, 6, n).astype(float)
    f["complaints"] = rng.poisson(0.3, n).astype(float)
    f["avg_satisfaction"] = np.where(rng.random(n) < 0.3, np.nan, rng.integers(1, 6, n)).astype(float)
    f["digital_share"] = rng.random(n).round(4)
    f["days_since_kyc_review"] = rng.integers(0, 900, n).astype(float)
    f["age_band"] = rng.choice(["18-29", "30-44", "45-59", "60+"], n)
    risk = (
        0.04 * f["recency_days"]
        - 2.5 * np.log(f["trb_ratio_30d"])
        + 0.9 * (f["outflow_to_competitors_hkd"] > 0)
        - 0.12 * f["txn_count"]
        + 0.8 * f["complaints"]
        + 0.8 * (f["age_band"] == "18-29")
        + 0.001 * f["days_since_kyc_review"]
        + rng.normal(0, 0.7, n)
    )
    f["churned"] = (risk > np.quantile(risk, 0.8)).astype(int)
    return f


@pytest.fixture(scope="module")
def extract() -> pd.DataFrame:
    return bank_extract()


@pytest.fixture(scope="module")
def trained(extract):
    from crm.ml.churn import train

    return train(
        extract, "churned", id_column="customer_id", time_column="month_start", exclude=["as_of_date"], **FAST
    )


def load_snapshot(conn, frame: pd.DataFrame, day: dt.date) -> None:
    """``frame``'s rows as the features snapshot of ``day`` (table created on first use)."""
    columns = {**NUMERIC, **CATEGORICAL}
    conn.execute(
        "create table if not exists marts.ml_features_customer_monthly (as_of_date date, month_start date,"
        f" customer_id text, {', '.join(f'{c} {t}' for c, t in columns.items())})"
    )
    conn.execute("grant select on marts.ml_features_customer_monthly to crm_ml")
    names = ["customer_id", *columns]
    with conn.cursor().copy(
        f"copy marts.ml_features_customer_monthly (as_of_date, month_start, {', '.join(names)}) from stdin"
    ) as copy:
        for row in frame[names].itertuples(index=False):
            values = [None if isinstance(v, float) and np.isnan(v) else v for v in row]
            values = [int(v) if columns.get(c) in ("integer", "bigint") and v is not None else v
                      for c, v in zip(names, values, strict=True)]  # fmt: skip
            copy.write_row((day, day.replace(day=1), *values))


def register(trained, frame, tmp_path, *, reference: bool = True, version: str = "v1") -> str:
    """Save and register ``trained`` as the churn champion (with its drift reference)."""
    from crm.ml.drift import reference_from_training, store_reference
    from crm.ml.registry import register_churn, save_artifact
    from crm.warehouse import connect

    artifact = save_artifact(trained.model, "churn", version, home=tmp_path)
    with connect("crm_ml", autocommit=True) as conn:
        assert register_churn(conn, trained, artifact, version).status == "champion"
        if reference:
            store_reference(conn, "churn", version, reference_from_training(trained, frame))
    return version


def stored(day: dt.date = DAY) -> pd.DataFrame:
    from crm.warehouse import connect

    with connect() as conn:
        rows = conn.execute(
            "select customer_id, churn_probability::float8, reason_1, reason_2, reason_3, reason_features"
            " from ml.churn_scores where as_of_date = %s order by customer_id",
            (day,),
        ).fetchall()
    return pd.DataFrame(rows, columns=["customer_id", "p", "reason_1", "reason_2", "reason_3", "features"])


@pytest.fixture
def scored(warehouse, db, extract, trained, tmp_path):
    """The held-out months scored on DAY by the champion: (stored rows, the frame scored)."""
    from crm.ml.scoring import score_churn

    frame = trained.test_frame
    load_snapshot(db, frame, DAY)
    register(trained, extract, tmp_path)
    result = score_churn(DAY, chunk=400)
    assert result.reasons and result.rows == len(frame) and result.chunks == -(-len(frame) // 400)
    return stored(), frame.sort_values("customer_id").reset_index(drop=True)


def test_wording_table_and_fallback():
    from crm.ml.explain import WORDING, describe, humanize

    assert describe("recency_days", 75) == "no own activity for 75 days"
    assert describe("trb_ratio_30d", 0.4) == "balance down 60 % vs 30 days ago"
    assert (
        describe("outflow_to_competitors_hkd", 250000)
        == "HKD 250,000 moved to other banks in the last 90 days"
    )
    assert describe("txn_count", 1) == "1 own transaction in the last 90 days"
    assert describe("avg_satisfaction", float("nan")) == "no satisfaction survey answered"
    assert describe("days_since_kyc_review", 412.0) == "Days since kyc review: 412"
    assert humanize("trb_ratio_30d") == "Trb ratio 30 days" and humanize("avg_fee_hkd") == "Average fee (HKD)"
    for feature, word in WORDING.items():
        for value in (0, 1, 2.5, 1000, None, float("nan"), "45-59"):
            if feature not in ("age_band", "income_band_cny") and isinstance(value, str):
                continue
            text = word(value)
            # no snake_case column name (a one-word column such as calls is plain English)
            assert text and "_" not in text, (feature, value, text)


def test_reasons_are_three_distinct_features_that_raise_the_score(scored, trained):
    from crm.ml.explain import WORDING

    rows, frame = scored
    assert (rows["customer_id"] == frame["customer_id"]).all()
    features = set(trained.columns.features)
    has_three = rows["features"].map(len) == 3
    # Only features that raise the score are reasons: a low-risk customer may have fewer than
    # three; those the retention team calls (the top quarter of scores) have three.
    top_quarter = rows["p"] >= rows["p"].quantile(0.75)
    assert has_three[top_quarter].mean() > 0.95, has_three[top_quarter].mean()
    assert has_three.mean() > 0.5 and (rows["features"].map(len) >= 1).mean() > 0.9
    for reasons, texts in zip(
        rows["features"], rows[["reason_1", "reason_2", "reason_3"]].to_numpy(), strict=True
    ):
        assert len(set(reasons)) == len(reasons) and set(reasons) <= features
        assert all(texts[: len(reasons)]) and all(pd.isna(t) for t in texts[len(reasons) :])
        for feature, text in zip(reasons, texts, strict=False):
            if feature in WORDING:
                assert "_" not in text and ("_" not in feature or feature not in text)
            else:
                assert re.fullmatch(r"Days since kyc review: [\d,]+", text), text

    # Setting a customer's top reason to the population's typical value lowers their score.
    from crm.ml.registry import load_artifact
    from crm.warehouse import connect

    with connect("crm_ml") as conn:
        path, sha = conn.execute("select artifact_path, artifact_sha256 from ml.model_versions").fetchone()
    model = load_artifact(path, sha)
    X = frame[trained.columns.features]
    base = model.predict_proba(X)[:, 1]
    np.testing.assert_allclose(base, rows["p"], rtol=1e-9)
    typical = {c: X[c].median() for c in trained.columns.numeric} | {
        c: X[c].mode()[0] for c in trained.columns.categorical
    }
    rng = np.random.default_rng(0)
    probe, control, kept = X.copy(), X.copy(), []  # row i: customer i with one feature made typical
    for i, reasons in enumerate(rows["features"]):
        if not reasons or X.at[i, reasons[0]] == typical[reasons[0]]:
            continue
        kept.append(i)
        probe.at[i, reasons[0]] = typical[reasons[0]]
        other = rng.choice(
            [c for c in trained.columns.features if c not in reasons and X.at[i, c] != typical[c]]
        )
        control.at[i, other] = typical[other]
    assert len(kept) > 0.7 * len(rows)
    lowered = model.predict_proba(probe.iloc[kept])[:, 1] < base[kept]
    random_lowered = model.predict_proba(control.iloc[kept])[:, 1] < base[kept]
    assert lowered.mean() > 0.85, lowered.mean()
    assert lowered.mean() > random_lowered.mean() + 0.2  # not what any feature would do


def test_contributions_add_up_to_the_margin(trained):
    """Per source column, averaged over the calibration members: sums to the mean margin."""
    from crm.ml.explain import ReasonExplainer

    X = trained.X_test
    explainer = ReasonExplainer(trained.model, trained.columns.numeric, trained.columns.categorical)
    phi = explainer.contributions(X)
    assert phi.shape == (len(X), len(trained.columns.features))
    members = [c.estimator for c in trained.model.calibrated_classifiers_]
    margin = np.mean([m.decision_function(X) for m in members], axis=0)
    base = np.mean([np.ravel(e.expected_value)[-1] for _, e, _ in explainer._parts])
    np.testing.assert_allclose(phi.sum(axis=1) + base, margin, atol=1e-6)
    age = trained.columns.features.index("age_band")  # one-hot block folded back onto its column
    assert np.abs(phi[:, age]).max() > 0


def test_chunking_does_not_change_reasons_and_a_threshold_limits_them(scored):
    from crm.ml.scoring import score_churn

    rows, _ = scored
    result = score_churn(DAY, chunk=50_000)
    assert result.chunks == 1
    again = stored()
    assert len(again) == len(rows)  # replaced, not added
    pd.testing.assert_frame_equal(again, rows)

    # Only the customers scoring at least the median explained: the same reasons, nulls below.
    cut = float(rows["p"].median())
    score_churn(DAY, chunk=300, reasons_min_probability=cut)
    partial = stored()
    above = rows["p"] >= cut
    assert 0 < above.sum() < len(rows)
    pd.testing.assert_frame_equal(partial[above], rows[above])
    assert partial.loc[~above, "features"].isna().all() and partial.loc[~above, "reason_1"].isna().all()
    assert (partial["p"] == rows["p"]).all()


def test_migration_0011_down_and_up(warehouse):
    from alembic import command

    from crm.warehouse import connect
    from crm.warehouse.migrate import alembic_config

    def columns(conn, table: str) -> set[str]:
        rows = conn.execute(
            "select column_name from information_schema.columns where table_schema = 'ml' and table_name = %s",
            (table,),
        ).fetchall()
        return {r[0] for r in rows}

    added = {"reason_1", "reason_2", "reason_3", "reason_features"}
    with connect() as conn:
        assert added <= columns(conn, "churn_scores") and "drift_reference" in columns(conn, "model_versions")
        assert columns(conn, "drift")
    command.downgrade(alembic_config(warehouse), "0010")
    with connect() as conn:
        assert not added & columns(conn, "churn_scores") and "drift_reference" not in columns(
            conn, "model_versions"
        )
        assert not columns(conn, "drift")
        assert {"customer_id", "churn_probability"} <= columns(conn, "churn_scores")
    command.upgrade(alembic_config(warehouse), "head")
    with connect("crm_ml") as conn:  # the scoring role can write both again
        conn.execute(
            "insert into ml.churn_scores values ('c', '2026-01-01', 0.5, 'v', now(), 'r', null, null, '{f}')"
        )
        conn.execute("insert into ml.drift (model_name, model_version, business_day, feature, kind, psi, status, rows)"
                     " values ('churn', 'v', '2026-01-01', 'f', 'feature', 0.3, 'alert', 1)")  # fmt: skip
        with pytest.raises(Exception, match="check"):
            conn.execute("insert into ml.drift (model_name, model_version, business_day, feature, kind, psi, status,"
                         " rows) values ('churn', 'v', '2026-01-01', 'g', 'feature', 0.3, 'ok', 1)")  # fmt: skip
