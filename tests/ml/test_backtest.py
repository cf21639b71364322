"""The lifetime-value backtest (crm.ml.backtest) on the generated history of tests/ml/conftest.py.

The cohort is the month end with four month ends after it (2025-05-31 on the default
273 days), so H = 4: the fixture is too short for the default 12. Every read goes through a
connection that has SET ROLE crm_ml, so a missing grant fails here as it would in the CLI.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

from crm.ml.backtest import ESTIMATES, month_ends, run_backtest
from crm.project_vars import dbt_vars

# One worker builds the shared history warehouse (tests/ml/conftest.py) once for both modules.
pytestmark = pytest.mark.xdist_group("history")

MONTHS = 4


def _as_ml(url: str) -> psycopg.Connection:
    conn = psycopg.connect(url)
    conn.execute("set role crm_ml")
    return conn


@pytest.fixture(scope="module")
def cohort(history_warehouse) -> dt.date:
    with _as_ml(history_warehouse.url) as conn:
        ends = month_ends(conn)
    assert len(ends) > MONTHS + 2, "the history is too short for a backtest"
    return ends[-MONTHS - 1]


@pytest.fixture(scope="module")
def result(history_warehouse, cohort):
    with _as_ml(history_warehouse.url) as conn:
        out = run_backtest(conn, cohort, MONTHS)
    print(f"\nbacktest {cohort} +{MONTHS}m, {len(out.frame)} customers, churn {out.churn_source}")
    for name in ESTIMATES:
        print(name, {k: round(v, 4) for k, v in out.metrics[name].items()})
    print("notes:", out.notes)
    return out


def test_quadrature_matches_the_closed_form_and_stays_finite_where_it_overflows():
    """The fallback for expected purchases agrees with FHL's closed form on CDNOW-like
    parameters, and is finite and increasing in t where the closed form is NaN (a, b huge)."""
    from crm.ml.backtest import expected_purchases_quadrature
    from crm.ml.clv_probabilistic import BGNBDParams, expected_purchases

    x, t_x, big_t = np.array([0.0, 5, 50]), np.array([0.0, 60, 140]), np.array([150.0, 150, 150])
    cdnow = BGNBDParams(0.243, 4.41, 0.793, 2.43, 0.0, 3, True)
    for t in (30.0, 365.0):
        closed = expected_purchases(cdnow, t, x, t_x, big_t)
        assert expected_purchases_quadrature(cdnow, t, x, t_x, big_t) == pytest.approx(closed, rel=1e-3)
    flat = BGNBDParams(29.6, 56.8, 3270.0, 7.66e6, 0.0, 3, True)
    with np.errstate(all="ignore"):
        assert np.isnan(expected_purchases(flat, 365.0, x, t_x, big_t)).all()
    short, long = (expected_purchases_quadrature(flat, t, x, t_x, big_t) for t in (122.0, 365.0))
    assert np.isfinite(long).all() and (long > short).all()


def test_realised_margin_is_the_discounted_sum_of_month_end_margins(history_warehouse, cohort, result):
    """Realised value = sum over the H month ends after C of profit_annualised_hkd / 12 / (1 + r)^i,
    0 for a month the customer is missing from; computed by hand for the top, middle and bottom
    realiser and for a customer missing from a later snapshot when there is one."""
    rate = float(dbt_vars()["clv_monthly_discount_rate"])
    frame = result.frame.sort_values("realised")
    picks = [frame.index[0], frame.index[len(frame) // 2], frame.index[-1]]
    with psycopg.connect(history_warehouse.url) as conn:
        ends = [d for d in month_ends(conn) if d > cohort][:MONTHS]
        gone = conn.execute(
            "select customer_id from marts.customer_360 where snapshot_date = %s and products_held > 0"
            " except select customer_id from marts.customer_360 where snapshot_date = %s limit 1",
            (cohort, ends[-1]),
        ).fetchone()
        if gone:
            picks.append(gone[0])
        for customer in picks:
            expected = 0.0
            for i, end in enumerate(ends, start=1):
                row = conn.execute(
                    "select profit_annualised_hkd from marts.customer_360 where customer_id = %s and snapshot_date = %s",
                    (customer, end),
                ).fetchone()
                expected += (float(row[0]) if row else 0.0) / 12 / (1 + rate) ** i
            assert result.frame.at[customer, "realised"] == pytest.approx(expected, rel=1e-9, abs=1e-6)
    assert ends[0] > cohort and (ends[-1] - cohort).days <= 31 * MONTHS
    assert frame["realised"].abs().sum() > 0


def test_no_estimate_reads_data_after_the_cohort(history_warehouse, cohort, result):
    """Change everything after C (transactions deleted, later snapshots' margins scaled, labels
    maturing after C deleted) in one transaction, rerun as crm_ml inside it: every prediction is
    unchanged while the realised value moves (so the change was visible), then roll back."""
    horizon = int(dbt_vars()["churn_horizon_days"])
    with psycopg.connect(history_warehouse.url) as conn:
        deleted = conn.execute(
            "delete from marts.fct_transactions where business_date > %s", (cohort,)
        ).rowcount
        conn.execute(
            "update marts.customer_360 set profit_annualised_hkd = profit_annualised_hkd * 10 + 1000,"
            " profit_window_hkd = profit_window_hkd * 10 + 1000 where snapshot_date > %s",
            (cohort,),
        )
        conn.execute("delete from marts.ml_churn_labels where as_of_date + %s > %s", (horizon, cohort))
        conn.execute("set local role crm_ml")
        again = run_backtest(conn, cohort, MONTHS)
        conn.rollback()
    assert deleted > 0
    for name in ESTIMATES:
        np.testing.assert_array_equal(
            again.frame[name].to_numpy(), result.frame[name].to_numpy(), err_msg=name
        )
    assert again.churn_source == result.churn_source
    assert not np.allclose(again.frame["realised"], result.frame["realised"])


def test_metrics_are_finite_and_the_naive_baseline_ranks(result):
    """Every metric finite, ten deciles covering the cohort, predictions not constant, and the
    naive baseline (last 3 months' margin) ranks realised value positively."""
    assert len(result.frame) >= 100 and result.months == MONTHS
    assert any("short horizon" in note for note in result.notes)
    for name in ESTIMATES:
        values = result.metrics[name]
        assert all(np.isfinite(v) for v in values.values()), (name, values)
        assert -1 <= values["spearman"] <= 1 and -1 <= values["gini"] <= 1
        deciles = result.calibration[name]
        assert [d["decile"] for d in deciles] == list(range(1, 11))
        assert sum(d["customers"] for d in deciles) == len(result.frame)
        assert result.frame[name].nunique() > 10
    assert result.metrics["naive"]["spearman"] > 0
    # Mean predicted by decile rises by construction; realised should too at the ends.
    naive = result.calibration["naive"]
    assert naive[-1]["realised"] > naive[0]["realised"]


def test_cli_prints_the_table_and_writes_the_report(history_warehouse, cohort, result):
    """crm ml backtest prints every estimate's metrics and writes JSON (equal to the module's
    numbers, no customer rows) and a small HTML page under $CRM_HOME/reports (the session's
    temporary home, whose secrets hold crm_ml's password); a day that is not a month-end
    snapshot exits 2."""
    from crm.ml.cli import app
    from crm.settings import get_settings

    runner = CliRunner()
    out = runner.invoke(app, ["backtest", "--cohort", cohort.isoformat(), "--months", str(MONTHS)])
    assert out.exit_code == 0, out.output
    assert "spearman" in out.output and all(name in out.output for name in ESTIMATES)
    folder = get_settings().home / "reports"
    report = folder / f"clv-backtest-{cohort.isoformat()}-{MONTHS}m.json"
    data = json.loads(report.read_text())
    assert data["customers"] == len(result.frame)
    assert data["metrics"]["naive"]["spearman"] == pytest.approx(result.metrics["naive"]["spearman"])
    assert not any(str(c) in report.read_text() for c in result.frame.index[:20])
    page = report.with_suffix(".html").read_text()
    assert "Value captured" in page and 'src="plotly.min.js"' in page and len(page) < 200_000
    assert (folder / "plotly.min.js").stat().st_size > 1_000_000
    bad = runner.invoke(app, ["backtest", "--cohort", (cohort - dt.timedelta(days=1)).isoformat()])
    assert bad.exit_code == 2 and "not a month-end snapshot" in bad.output
