"""Daily churn scoring (crm.ml.scoring) on a copy of the built bank.

The model: ``crm.ml.churn.train`` on the bank's feature snapshot with a synthetic label
(recency and competitor outflow plus noise; labels are not in dbt yet), trained once per
module from the built template and registered as champion in each test's own copy.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import psycopg
import pytest

from .bank import DAYS, START

DAY = START + dt.timedelta(days=DAYS - 2)  # the built day: the features' only snapshot
FAST = {"max_iter": 30, "cv_splits": 2, "param_grid": [{"max_leaf_nodes": 7}]}


@pytest.fixture(scope="module")
def trained(pg_server, built_template):
    """A churn model trained on the template's snapshot (read as the owner, then disconnected)."""
    from crm.ml.churn import train
    from crm.ml.scoring import read_snapshot
    from crm.warehouse import with_database

    with psycopg.connect(with_database(pg_server.url(), built_template[0])) as conn:
        snapshot, frame = read_snapshot(conn, DAY)
    assert snapshot == DAY and len(frame) > 100
    rng = np.random.default_rng(0)
    risk = (
        frame["recency_days"].fillna(frame["recency_days"].max()).rank(pct=True)
        + frame["outflow_to_competitors_hkd"].fillna(0).rank(pct=True)
        + rng.normal(0, 0.4, len(frame))
    )
    frame["churned"] = (risk > risk.quantile(0.75)).astype(int)

    # A 7-day bank leaves some columns nearly empty or nearly constant (satisfaction: 5 values
    # of 400); a CV fold may then see a single value, on which HistGradientBoosting's binning
    # fails. Months of history fill them; here they are left out.
    def thin(c: str) -> bool:
        values = frame[c].dropna()
        return len(values) < 50 or values.value_counts().iloc[0] > 0.9 * len(frame)

    thin_columns = [c for c in frame.select_dtypes("number").columns if c != "churned" and thin(c)]
    return train(
        frame,
        "churned",
        id_column="customer_id",
        exclude=["as_of_date", "month_start", *thin_columns],
        **FAST,
    )


@pytest.fixture
def champion(warehouse, trained, tmp_path) -> str:
    """The trained model registered as the champion of churn in this test's warehouse."""
    from crm.ml.registry import register_churn, save_artifact
    from crm.warehouse import connect

    artifact = save_artifact(trained.model, "churn", "v1", home=tmp_path)
    with connect("crm_ml", autocommit=True) as conn:
        decision = register_churn(conn, trained, artifact, "v1")
    assert decision.status == "champion"
    return "v1"


def _snapshot_customers(day: dt.date = DAY) -> set[str]:
    from crm.warehouse import connect

    with connect() as conn:
        rows = conn.execute(
            "select customer_id from marts.ml_features_customer_monthly where as_of_date ="
            " (select max(as_of_date) from marts.ml_features_customer_monthly where as_of_date <= %s)",
            (day,),
        ).fetchall()
    return {r[0] for r in rows}


def _scores(day: dt.date = DAY) -> list[tuple]:
    from crm.warehouse import connect

    with connect() as conn:
        return conn.execute(
            "select customer_id, churn_probability, model_version, scored_at from ml.churn_scores"
            " where as_of_date = %s order by customer_id",
            (day,),
        ).fetchall()


def test_scoring_writes_one_row_per_customer_of_the_snapshot(champion):
    from crm.ml.scoring import score_churn

    result = score_churn(DAY)
    customers = _snapshot_customers()
    scores = _scores()
    assert result.scored and result.model_version == champion and result.snapshot_date == DAY
    assert result.rows == len(customers) == len(scores)
    assert {s[0] for s in scores} == customers
    assert all(0 <= s[1] <= 1 and s[2] == champion for s in scores)
    assert len({s[1] for s in scores}) > 10  # a model, not a constant
    assert result.seconds > 0 and f"scored {len(customers):,} customers" in result.message


def test_rescoring_the_same_day_is_idempotent(champion):
    """Twice the same day (the second time through the CLI): one row per customer, day and model."""
    from typer.testing import CliRunner

    from crm.cli import app
    from crm.ml.scoring import score_churn

    first = score_churn(DAY)
    before = _scores()
    out = CliRunner().invoke(app, ["ml", "score", "--date", DAY.isoformat(), "--chunk", "97"])
    assert out.exit_code == 0, out.output
    assert f"{first.rows:,} rows scored with churn {champion} (features of {DAY}) in " in out.output
    after = _scores()
    assert len(after) == len(before) == first.rows
    assert [(c, p) for c, p, _, _ in after] == [(c, p) for c, p, _, _ in before]  # same model, same scores
    assert min(s[3] for s in after) > max(s[3] for s in before)  # replaced, not kept
    # A later day scores the same snapshot under its own as-of date; the first day is untouched.
    later = score_churn(DAY + dt.timedelta(days=3))
    assert later.snapshot_date == DAY and len(_scores(DAY + dt.timedelta(days=3))) == first.rows
    assert len(_scores()) == first.rows


def test_without_a_champion_nothing_is_written(warehouse):
    from typer.testing import CliRunner

    from crm.cli import app
    from crm.ml.scoring import NO_CHAMPION, score_churn

    result = score_churn(DAY)
    assert not result.scored and result.rows == 0 and result.model_version is None
    assert str(result) == NO_CHAMPION == "no champion model: nothing scored"
    out = CliRunner().invoke(app, ["ml", "score", "--date", DAY.isoformat()])
    assert out.exit_code == 0, out.output
    assert NO_CHAMPION in out.output
    assert _scores() == []


def test_memory_is_bounded_by_the_chunk(champion):
    """A tiny chunk: the server-side cursor is read (and written) in several chunks, none larger."""
    from crm.ml.scoring import score_churn

    n = len(_snapshot_customers())
    result = score_churn(DAY, chunk=50)
    assert result.chunks == math.ceil(n / 50) > 1
    assert result.rows == n == len(_scores())


def test_a_tampered_champion_is_refused_and_the_scores_stay(champion, tmp_path):
    from crm.ml.registry import ArtifactIntegrityError
    from crm.ml.scoring import score_churn

    score_churn(DAY)
    before = _scores()
    path = tmp_path / "models" / "churn" / "v1.skops"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ArtifactIntegrityError):
        score_churn(DAY)
    assert _scores() == before


def test_no_snapshot_on_or_before_the_day_is_an_error(champion):
    from crm.ml.scoring import NoFeaturesError, score_churn

    with pytest.raises(NoFeaturesError, match="no feature snapshot on or before 2025-12-31"):
        score_churn(dt.date(2025, 12, 31))
    assert _scores(dt.date(2025, 12, 31)) == []
