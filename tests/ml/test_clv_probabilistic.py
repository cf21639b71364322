"""BG/NBD and Gamma-Gamma (crm.ml.clv_probabilistic) against the published CDNOW results.

The CDNOW sample (2,357 customers of the March 1997 cohort, 39-week calibration, time in
weeks) comes from the archived ``lifetimes`` package, a dev-only dependency used here as a
data source: the production module must not import it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import hyp2f1

from crm.ml import clv_probabilistic as clv

WEEKS_PER_MONTH = 52.0 / 12.0


def _lifetimes_datasets_dir() -> Path:
    # find_spec does not run lifetimes/__init__.py, so the files are found even if the
    # archived package no longer imports cleanly.
    spec = importlib.util.find_spec("lifetimes")
    assert spec is not None and spec.submodule_search_locations, "lifetimes (dev extra) is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "datasets"


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    """customer_id, frequency, recency, T, monetary_value for all 2,357 customers."""
    try:
        from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value

        data = load_cdnow_summary_data_with_monetary_value()
    except Exception:  # the archived loader may break on newer pandas/setuptools
        data = pd.read_csv(_lifetimes_datasets_dir() / "cdnow_customers_summary_with_transactions.csv")
        data.columns = ["customer_id", "frequency", "recency", "T", "monetary_value"]
        data = data.set_index("customer_id")
    return data


@pytest.fixture(scope="module")
def cdnow_rft() -> pd.DataFrame:
    try:
        from lifetimes.datasets import load_cdnow_summary

        return load_cdnow_summary()
    except Exception:
        return pd.read_csv(_lifetimes_datasets_dir() / "cdnow_customers_summary.csv")


@pytest.fixture(scope="module")
def bgnbd(cdnow_rft: pd.DataFrame) -> clv.BGNBDParams:
    return clv.fit_bgnbd(cdnow_rft["frequency"], cdnow_rft["recency"], cdnow_rft["T"])


@pytest.fixture(scope="module")
def gamma_gamma(cdnow: pd.DataFrame) -> clv.GammaGammaParams:
    repeat = cdnow[cdnow["frequency"] > 0]
    return clv.fit_gamma_gamma(repeat["frequency"], repeat["monetary_value"])


def test_cdnow_sample_shape(cdnow: pd.DataFrame, cdnow_rft: pd.DataFrame) -> None:
    assert len(cdnow) == len(cdnow_rft) == 2357
    assert cdnow["T"].max() == pytest.approx(38.86)
    assert (cdnow["frequency"] > 0).sum() == 946


def test_bgnbd_reproduces_published_cdnow_mles(bgnbd: clv.BGNBDParams) -> None:
    # Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way", section 5.
    assert bgnbd.converged
    assert bgnbd.n_customers == 2357
    assert bgnbd.r == pytest.approx(0.243, abs=0.005)
    assert bgnbd.alpha == pytest.approx(4.414, abs=0.005)
    assert bgnbd.a == pytest.approx(0.793, abs=0.005)
    assert bgnbd.b == pytest.approx(2.426, abs=0.005)
    assert round(bgnbd.log_likelihood, 1) == -9582.4


def test_bgnbd_total_matches_per_customer_log_likelihood(
    bgnbd: clv.BGNBDParams, cdnow_rft: pd.DataFrame
) -> None:
    per_customer = clv.bgnbd_log_likelihood(
        bgnbd, cdnow_rft["frequency"], cdnow_rft["recency"], cdnow_rft["T"]
    )
    assert per_customer.shape == (2357,)
    assert per_customer.sum() == pytest.approx(bgnbd.log_likelihood, abs=1e-6)
    # The optimum: nudging any parameter by 1% lowers the likelihood.
    base = (bgnbd.r, bgnbd.alpha, bgnbd.a, bgnbd.b)
    for i in range(4):
        for factor in (0.99, 1.01):
            nudged = list(base)
            nudged[i] *= factor
            ll = clv.bgnbd_log_likelihood(
                tuple(nudged), cdnow_rft["frequency"], cdnow_rft["recency"], cdnow_rft["T"]
            ).sum()
            assert ll < bgnbd.log_likelihood


def test_gamma_gamma_reproduces_published_cdnow_mles(gamma_gamma: clv.GammaGammaParams) -> None:
    # Fader, Hardie & Lee (2005), "RFM and CLV": p = 6.25, q = 3.74, gamma = 15.44 on the
    # 946 repeat buyers. The bundled file rounds mean spend to cents, so the MLE of gamma
    # lands at 15.448: within 0.01 of the published value, but it would round to 15.45.
    assert gamma_gamma.converged
    assert gamma_gamma.n_customers == 946
    assert gamma_gamma.p == pytest.approx(6.25, abs=0.01)
    assert gamma_gamma.q == pytest.approx(3.74, abs=0.01)
    assert gamma_gamma.v == pytest.approx(15.44, abs=0.01)


def test_bgnbd_likelihood_finite_for_heavy_buyer(bgnbd: clv.BGNBDParams, cdnow_rft: pd.DataFrame) -> None:
    # Γ(r + 10000) and (α+T)^(r+10000) overflow a float; their logs do not.
    heavy = {"frequency": [10_000, 10_000, 10_000], "recency": [38.8, 20.0, 0.5], "T": [38.86] * 3}
    ll = clv.bgnbd_log_likelihood(bgnbd, heavy["frequency"], heavy["recency"], heavy["T"])
    assert np.all(np.isfinite(ll))
    alive = clv.probability_alive(bgnbd, heavy["frequency"], heavy["recency"], heavy["T"])
    assert np.all(np.isfinite(alive)) and np.all((alive >= 0) & (alive <= 1))
    expected = clv.expected_purchases(bgnbd, 39.0, heavy["frequency"], heavy["recency"], heavy["T"])
    assert np.all(np.isfinite(expected)) and np.all(expected >= 0)
    # Still buying at the end of the window: alive, and expected to keep his pace (~257/week).
    steady = clv.expected_purchases(bgnbd, 1.0, [10_000], [38.86], [38.86])
    assert 150 < steady[0] < 300
    # A fit with the heavy buyer in the sample stays finite and converges.
    fit = clv.fit_bgnbd(
        np.append(cdnow_rft["frequency"], 10_000),
        np.append(cdnow_rft["recency"], 38.8),
        np.append(cdnow_rft["T"], 38.86),
    )
    assert fit.converged and np.isfinite(fit.log_likelihood)
    assert (
        fit.log_likelihood
        > bgnbd.log_likelihood + clv.bgnbd_log_likelihood(bgnbd, [10_000], [38.8], [38.86])[0]
    )


def test_gamma_gamma_likelihood_finite_for_heavy_buyer(
    gamma_gamma: clv.GammaGammaParams, cdnow: pd.DataFrame
) -> None:
    ll = clv.gamma_gamma_log_likelihood(gamma_gamma, [10_000], [25.0])
    assert np.isfinite(ll[0])
    repeat = cdnow[cdnow["frequency"] > 0]
    fit = clv.fit_gamma_gamma(
        np.append(repeat["frequency"], 10_000), np.append(repeat["monetary_value"], 25.0)
    )
    assert fit.converged and np.isfinite(fit.log_likelihood)


def test_probability_alive_in_unit_interval(bgnbd: clv.BGNBDParams, cdnow_rft: pd.DataFrame) -> None:
    alive = clv.probability_alive(bgnbd, cdnow_rft["frequency"], cdnow_rft["recency"], cdnow_rft["T"])
    assert alive.shape == (2357,)
    assert np.all((alive >= 0) & (alive <= 1))
    assert 0 < alive.min() < alive.max() == 1.0


def test_probability_alive_is_one_without_repeat_purchases(bgnbd: clv.BGNBDParams) -> None:
    # BG/NBD customers can only drop out right after a purchase, so with x = 0 (recency 0 by
    # convention) P(alive) is exactly 1 however long the customer has been quiet.
    alive = clv.probability_alive(bgnbd, [0, 0, 0], [0.0, 0.0, 0.0], [1.0, 38.86, 500.0])
    np.testing.assert_array_equal(alive, 1.0)
    # With repeat purchases, even a purchase on the last day leaves the chance that it was
    # followed by dropout: P(alive) = 1 / (1 + a / (b + x - 1)).
    last_day = clv.probability_alive(bgnbd, [1, 5], [38.86, 38.86], [38.86, 38.86])
    np.testing.assert_allclose(last_day, 1.0 / (1.0 + bgnbd.a / (bgnbd.b + np.array([1, 5]) - 1.0)))
    # Quiet for longer after the last purchase: less likely to be alive.
    quiet = clv.probability_alive(bgnbd, [3, 3, 3], [10.0, 10.0, 10.0], [12.0, 25.0, 38.86])
    assert quiet[0] > quiet[1] > quiet[2]


def test_expected_purchases_matches_untransformed_formula(
    bgnbd: clv.BGNBDParams, cdnow_rft: pd.DataFrame
) -> None:
    # FHL 2005 eq. 10 as printed, for moderate x where it does not overflow.
    r, alpha, a, b = bgnbd.r, bgnbd.alpha, bgnbd.a, bgnbd.b
    x = cdnow_rft["frequency"].to_numpy(dtype=float)
    t_x = cdnow_rft["recency"].to_numpy()
    big_t = cdnow_rft["T"].to_numpy()
    t = 39.0
    z = t / (alpha + big_t + t)
    head = (a + b + x - 1) / (a - 1)
    bracket = 1 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    odds = np.where(x > 0, a / (b + x - 1) * ((alpha + big_t) / (alpha + t_x)) ** (r + x), 0.0)
    printed = head * bracket / (1 + odds)
    ours = clv.expected_purchases(bgnbd, t, x, t_x, big_t)
    np.testing.assert_allclose(ours, printed, rtol=1e-7, atol=1e-10)


def test_expected_purchases_grow_with_time(bgnbd: clv.BGNBDParams) -> None:
    by_t = [clv.expected_purchases(bgnbd, t, [2, 0], [30.43, 0.0], [38.86, 38.86]) for t in (0.0, 10.0, 39.0)]
    np.testing.assert_array_equal(by_t[0], 0.0)
    assert np.all(by_t[1] > 0) and np.all(by_t[2] > by_t[1])
    new = clv.expected_purchases_new_customer(bgnbd, [0.0, 39.0, 78.0])
    assert new[0] == 0 and 0 < new[1] < new[2]


def test_new_customer_expectation_tracks_calibration_repeat_purchases(
    bgnbd: clv.BGNBDParams, cdnow_rft: pd.DataFrame
) -> None:
    # FHL 2005 fig. 1: the model tracks the cohort's cumulative repeat purchases in the
    # calibration period (2,457 actual by week 39).
    predicted = clv.expected_purchases_new_customer(bgnbd, cdnow_rft["T"]).sum()
    actual = cdnow_rft["frequency"].sum()
    assert actual == 2457
    assert predicted == pytest.approx(actual, rel=0.02)


def test_conditional_expected_average_profit(gamma_gamma: clv.GammaGammaParams) -> None:
    p, q, v = gamma_gamma.p, gamma_gamma.q, gamma_gamma.v
    population_mean = p * v / (q - 1)
    profit = clv.conditional_expected_average_profit(gamma_gamma, [0, 1, 50], [0.0, 100.0, 100.0])
    assert profit[0] == pytest.approx(population_mean)
    # A weighted mean of the population mean and the customer's own mean spend, moving
    # toward the customer's own mean as the evidence grows.
    assert population_mean < profit[1] < profit[2] < 100.0
    weight = p * 50 / (p * 50 + q - 1)
    assert profit[2] == pytest.approx(weight * 100.0 + (1 - weight) * population_mean)


def test_customer_lifetime_value(
    bgnbd: clv.BGNBDParams, gamma_gamma: clv.GammaGammaParams, cdnow: pd.DataFrame
) -> None:
    args = (cdnow["frequency"], cdnow["recency"], cdnow["T"], cdnow["monetary_value"])
    year = clv.customer_lifetime_value(
        bgnbd, gamma_gamma, *args, months=12, periods_per_month=WEEKS_PER_MONTH
    )
    assert year.shape == (2357,)
    assert np.all(np.isfinite(year)) and np.all(year >= 0)
    two_years = clv.customer_lifetime_value(
        bgnbd, gamma_gamma, *args, months=24, periods_per_month=WEEKS_PER_MONTH
    )
    assert np.all(two_years >= year) and two_years.sum() > year.sum()
    undiscounted = clv.customer_lifetime_value(
        bgnbd, gamma_gamma, *args, months=12, monthly_discount_rate=0.0, periods_per_month=WEEKS_PER_MONTH
    )
    assert np.all(undiscounted >= year) and undiscounted.sum() > year.sum()
    # Undiscounted value is expected purchases in the horizon times expected spend.
    purchases = clv.expected_purchases(bgnbd, 12 * WEEKS_PER_MONTH, *args[:3])
    profit = clv.conditional_expected_average_profit(gamma_gamma, args[0], args[3])
    np.testing.assert_allclose(undiscounted, purchases * profit, rtol=1e-9)


def test_inputs_are_checked(bgnbd: clv.BGNBDParams) -> None:
    with pytest.raises(ValueError, match="recency"):
        clv.fit_bgnbd([1, 2], [5.0, 50.0], [10.0, 10.0])
    with pytest.raises(ValueError, match="frequency"):
        clv.probability_alive(bgnbd, [-1], [0.0], [10.0])
    with pytest.raises(ValueError, match="repeat buyers"):
        clv.fit_gamma_gamma([0, 2], [0.0, 10.0])
    with pytest.raises(ValueError, match="missing"):
        clv.fit_bgnbd([1, np.nan], [1.0, 1.0], [2.0, 2.0])


def test_production_code_does_not_import_lifetimes() -> None:
    code = "import sys, crm.ml.clv_probabilistic; assert 'lifetimes' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
