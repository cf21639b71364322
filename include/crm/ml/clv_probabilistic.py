"""Probabilistic customer lifetime value: BG/NBD for how often, Gamma-Gamma for how much.

Both models work on a per-customer RFM summary over a calibration window:

* ``frequency`` (x): number of *repeat* purchases (the first purchase is not counted);
* ``recency`` (t_x): age of the customer at the last repeat purchase, measured from the
  first purchase (0 when x = 0);
* ``T``: age of the customer at the end of the window, measured from the first purchase;
* ``monetary_value`` (m̄): mean value of the repeat purchases (Gamma-Gamma only).

Recency and T share one time unit (days, weeks, ...); every ``t`` below is in that unit.

BG/NBD (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way"): while alive a
customer buys as a Poisson process with rate λ ~ Gamma(r, α); after each purchase the
customer drops out with probability p ~ Beta(a, b). Dropout can only happen right after a
purchase, so a customer with no repeat purchase is alive with probability 1.

Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV: Using Iso-Value Curves for Customer
Base Analysis"): each transaction value is Gamma(p, ν) with ν ~ Gamma(q, γ) across
customers (``v`` here is γ), independent of the purchase process. It is fitted on repeat
buyers only.

Both are fitted by maximum likelihood with :func:`scipy.optimize.minimize` on the log of the
parameters (so they stay positive). The log-likelihoods are written with ``gammaln`` and
``betaln`` and combined with ``logaddexp``, never as ratios of gamma functions or powers, so
a heavy buyer (x in the thousands) stays finite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

FloatArray = NDArray[np.float64]

__all__ = [
    "BGNBDParams",
    "GammaGammaParams",
    "bgnbd_log_likelihood",
    "conditional_expected_average_profit",
    "customer_lifetime_value",
    "expected_purchases",
    "expected_purchases_new_customer",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "gamma_gamma_log_likelihood",
    "probability_alive",
]


@dataclass(frozen=True)
class BGNBDParams:
    """Fitted BG/NBD: purchase rate λ ~ Gamma(r, alpha), dropout p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    n_customers: int
    converged: bool


@dataclass(frozen=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma: spend ~ Gamma(p, ν), ν ~ Gamma(q, v)."""

    p: float
    q: float
    v: float
    log_likelihood: float
    n_customers: int
    converged: bool


# ---------------------------------------------------------------------------------------
# Input checks


def _as_float(values: ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be one-dimensional")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has missing or infinite values")
    return arr


def _rfm(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    x = _as_float(frequency, "frequency")
    t_x = _as_float(recency, "recency")
    big_t = _as_float(T, "T")
    x, t_x, big_t = np.broadcast_arrays(x, t_x, big_t)
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency must be a non-negative whole number of repeat purchases")
    if np.any(t_x < 0) or np.any(t_x > big_t):
        raise ValueError("recency must lie in [0, T]")
    if np.any(big_t <= 0):
        raise ValueError("T must be positive")
    return x, t_x, big_t


# ---------------------------------------------------------------------------------------
# BG/NBD


def _bgnbd_ll(
    r: float, alpha: float, a: float, b: float, x: FloatArray, t_x: FloatArray, big_t: FloatArray
) -> FloatArray:
    """Per-customer log-likelihood (FHL 2005, eq. 6), in log space throughout.

    L = Γ(r+x) α^r / Γ(r) · [ B(a, b+x)/B(a, b) · (α+T)^-(r+x)
                              + 1{x>0} B(a+1, b+x-1)/B(a, b) · (α+t_x)^-(r+x) ]
    """
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) - betaln(a, b)
    still_alive = betaln(a, b + x) - (r + x) * np.log(alpha + big_t)
    repeat = x > 0
    # For x = 0 the second term is absent; evaluate it at x = 1 there and mask it out.
    x_safe = np.where(repeat, x, 1.0)
    dropped = betaln(a + 1, b + x_safe - 1) - (r + x_safe) * np.log(alpha + t_x)
    return common + np.where(repeat, np.logaddexp(still_alive, dropped), still_alive)


def bgnbd_log_likelihood(
    params: BGNBDParams | tuple[float, float, float, float],
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
) -> FloatArray:
    """Per-customer BG/NBD log-likelihood under ``params`` ((r, alpha, a, b) or a fit)."""
    r, alpha, a, b = _bgnbd_tuple(params)
    return _bgnbd_ll(r, alpha, a, b, *_rfm(frequency, recency, T))


def _bgnbd_tuple(
    params: BGNBDParams | tuple[float, float, float, float],
) -> tuple[float, float, float, float]:
    if isinstance(params, BGNBDParams):
        return params.r, params.alpha, params.a, params.b
    r, alpha, a, b = params
    return float(r), float(alpha), float(a), float(b)


def _maximise(
    negative_ll: Callable[[FloatArray], float], start: FloatArray
) -> tuple[FloatArray, float, bool]:
    """Minimise a negative log-likelihood over log-parameters: quasi-Newton, then a polish.

    L-BFGS-B gets close fast; Nelder-Mead from there settles the last digits without relying
    on finite-difference gradients near the optimum.
    """
    first = minimize(negative_ll, start, method="L-BFGS-B")
    best = first.x if np.isfinite(first.fun) else start
    polish = minimize(
        negative_ll,
        best,
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 20_000, "maxfev": 40_000},
    )
    if polish.fun <= first.fun:
        return polish.x, float(polish.fun), bool(polish.success)
    return first.x, float(first.fun), bool(first.success)


def fit_bgnbd(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    *,
    initial: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
) -> BGNBDParams:
    """Maximum-likelihood BG/NBD on an RFM summary (see the module docstring for the inputs).

    Returns (r, alpha, a, b) and the total log-likelihood at the optimum. ``alpha`` is in the
    time unit of ``recency``/``T``. No penalty is added: these are the plain MLEs.
    """
    x, t_x, big_t = _rfm(frequency, recency, T)
    if x.size == 0:
        raise ValueError("no customers to fit")
    if not np.any(x > 0):
        raise ValueError("BG/NBD needs at least one repeat buyer")

    def negative_ll(log_params: FloatArray) -> float:
        r, alpha, a, b = np.exp(log_params)
        total = -float(np.sum(_bgnbd_ll(r, alpha, a, b, x, t_x, big_t)))
        return total if np.isfinite(total) else np.inf

    log_params, nll, converged = _maximise(negative_ll, np.log(np.asarray(initial, dtype=np.float64)))
    r, alpha, a, b = (float(v) for v in np.exp(log_params))
    return BGNBDParams(
        r=r, alpha=alpha, a=a, b=b, log_likelihood=-nll, n_customers=int(x.size), converged=converged
    )


def _log_odds_dropped(
    r: float, alpha: float, a: float, b: float, x: FloatArray, t_x: FloatArray, big_t: FloatArray
) -> FloatArray:
    """log of a/(b+x-1) · ((α+T)/(α+t_x))^(r+x) for x > 0; -inf for x = 0 (never dropped)."""
    repeat = x > 0
    x_safe = np.where(repeat, x, 1.0)
    log_odds = (
        np.log(a) - np.log(b + x_safe - 1) + (r + x_safe) * (np.log(alpha + big_t) - np.log(alpha + t_x))
    )
    return np.where(repeat, log_odds, -np.inf)


def probability_alive(
    params: BGNBDParams | tuple[float, float, float, float],
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
) -> FloatArray:
    """P(alive at T | x, t_x, T) = 1 / (1 + 1{x>0} · a/(b+x-1) · ((α+T)/(α+t_x))^(r+x)).

    By the model's definition a customer with no repeat purchase (x = 0) is alive with
    probability 1, whatever T is: BG/NBD customers only drop out right after a purchase.
    """
    r, alpha, a, b = _bgnbd_tuple(params)
    x, t_x, big_t = _rfm(frequency, recency, T)
    # 1 / (1 + e^z) = e^(-logaddexp(0, z)), exact for huge z (heavy buyers long gone).
    return np.exp(-np.logaddexp(0.0, _log_odds_dropped(r, alpha, a, b, x, t_x, big_t)))


def expected_purchases(
    params: BGNBDParams | tuple[float, float, float, float],
    t: float,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
) -> FloatArray:
    """E[purchases in (T, T+t] | x, t_x, T] (FHL 2005, eq. 10).

    (a+b+x-1)/(a-1) · [1 - ((α+T)/(α+T+t))^(r+x) · 2F1(r+x, b+x; a+b+x-1; z)] / (1 + odds),
    z = t/(α+T+t). Euler's transformation 2F1(A, B; C; z) = (1-z)^(C-A-B) 2F1(C-A, C-B; C; z)
    turns the bracket into 1 - (1-z)^(a-1) · 2F1(a+b-1-r, a-1; a+b+x-1; z): no power of
    order x and no hypergeometric blow-up for heavy buyers.
    """
    r, alpha, a, b = _bgnbd_tuple(params)
    x, t_x, big_t = _rfm(frequency, recency, T)
    if t < 0:
        raise ValueError("t must be non-negative")
    if np.isclose(a, 1.0):
        raise ValueError("expected purchases are not defined by this closed form for a = 1")
    z = t / (alpha + big_t + t)
    bracket = 1.0 - (1.0 - z) ** (a - 1.0) * hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z)
    alive = np.exp(-np.logaddexp(0.0, _log_odds_dropped(r, alpha, a, b, x, t_x, big_t)))
    return (a + b + x - 1.0) / (a - 1.0) * bracket * alive


def expected_purchases_new_customer(
    params: BGNBDParams | tuple[float, float, float, float], t: ArrayLike
) -> FloatArray:
    """E[X(t)] for a customer just acquired (FHL 2005, eq. 9).

    (a+b-1)/(a-1) · [1 - (α/(α+t))^r · 2F1(r, b; a+b-1; t/(α+t))]
    """
    r, alpha, a, b = _bgnbd_tuple(params)
    tt = _as_float(t, "t")
    if np.any(tt < 0):
        raise ValueError("t must be non-negative")
    if np.isclose(a, 1.0):
        raise ValueError("expected purchases are not defined by this closed form for a = 1")
    hyp = hyp2f1(r, b, a + b - 1.0, tt / (alpha + tt))
    return (a + b - 1.0) / (a - 1.0) * (1.0 - (alpha / (alpha + tt)) ** r * hyp)


# ---------------------------------------------------------------------------------------
# Gamma-Gamma


def _spend(frequency: ArrayLike, monetary_value: ArrayLike) -> tuple[FloatArray, FloatArray]:
    x = _as_float(frequency, "frequency")
    m = _as_float(monetary_value, "monetary_value")
    x, m = np.broadcast_arrays(x, m)
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency must be a non-negative whole number of repeat purchases")
    return x, m


def _gamma_gamma_ll(p: float, q: float, v: float, x: FloatArray, m: FloatArray) -> FloatArray:
    """Per-customer log-likelihood of the mean spend m̄ over x transactions (FHL 2005b).

    f(m̄ | p, q, γ, x) = Γ(px+q) / (Γ(px) Γ(q)) · γ^q m̄^(px-1) x^(px) / (γ + m̄x)^(px+q)
    """
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(v + m * x)
    )


def gamma_gamma_log_likelihood(
    params: GammaGammaParams | tuple[float, float, float],
    frequency: ArrayLike,
    monetary_value: ArrayLike,
) -> FloatArray:
    """Per-customer Gamma-Gamma log-likelihood; repeat buyers only (x > 0, m̄ > 0)."""
    p, q, v = _gg_tuple(params)
    x, m = _spend(frequency, monetary_value)
    if np.any(x <= 0) or np.any(m <= 0):
        raise ValueError("Gamma-Gamma likelihood is defined for repeat buyers with positive spend only")
    return _gamma_gamma_ll(p, q, v, x, m)


def _gg_tuple(params: GammaGammaParams | tuple[float, float, float]) -> tuple[float, float, float]:
    if isinstance(params, GammaGammaParams):
        return params.p, params.q, params.v
    p, q, v = params
    return float(p), float(q), float(v)


def fit_gamma_gamma(
    frequency: ArrayLike,
    monetary_value: ArrayLike,
    *,
    initial: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma on repeat buyers (frequency > 0, monetary_value > 0).

    Pass repeat buyers only: customers without a repeat purchase carry no spend information
    in this model, and a ValueError says so rather than dropping them silently.
    """
    x, m = _spend(frequency, monetary_value)
    if x.size == 0:
        raise ValueError("no customers to fit")
    if np.any(x <= 0) or np.any(m <= 0):
        raise ValueError(
            "fit_gamma_gamma takes repeat buyers only (frequency > 0 and monetary_value > 0); filter first"
        )

    def negative_ll(log_params: FloatArray) -> float:
        p, q, v = np.exp(log_params)
        total = -float(np.sum(_gamma_gamma_ll(p, q, v, x, m)))
        return total if np.isfinite(total) else np.inf

    log_params, nll, converged = _maximise(negative_ll, np.log(np.asarray(initial, dtype=np.float64)))
    p, q, v = (float(val) for val in np.exp(log_params))
    return GammaGammaParams(p=p, q=q, v=v, log_likelihood=-nll, n_customers=int(x.size), converged=converged)


def conditional_expected_average_profit(
    params: GammaGammaParams | tuple[float, float, float],
    frequency: ArrayLike,
    monetary_value: ArrayLike,
) -> FloatArray:
    """E[M | x, m̄] = p(γ + x m̄) / (px + q - 1).

    A weighted mean of the population mean pγ/(q-1) and the customer's own m̄ (weight
    px/(px+q-1)); for x = 0 it is the population mean. Needs q > 1 (finite mean spend).
    """
    p, q, v = _gg_tuple(params)
    if q <= 1:
        raise ValueError("q must exceed 1 for the expected spend to be finite")
    x, m = _spend(frequency, monetary_value)
    m = np.where(x > 0, m, 0.0)
    return p * (v + x * m) / (p * x + q - 1.0)


# ---------------------------------------------------------------------------------------
# CLV


def customer_lifetime_value(
    purchases: BGNBDParams | tuple[float, float, float, float],
    spend: GammaGammaParams | tuple[float, float, float],
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_value: ArrayLike,
    *,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
    periods_per_month: float,
) -> FloatArray:
    """Discounted expected value over the next ``months`` months, per customer.

    Σ_{i=1..months} (E[purchases by month i] - E[purchases by month i-1]) · E[M] / (1+d)^i,
    with purchase counts from BG/NBD and E[M] from Gamma-Gamma (the two are assumed
    independent, as both papers do). ``periods_per_month`` converts months to the time unit
    of ``recency``/``T`` (about 30.44 for days, 4.348 for weeks, 1 for months).
    """
    if months < 1:
        raise ValueError("months must be at least 1")
    if monthly_discount_rate <= -1:
        raise ValueError("monthly_discount_rate must exceed -1")
    if periods_per_month <= 0:
        raise ValueError("periods_per_month must be positive")
    profit = conditional_expected_average_profit(spend, frequency, monetary_value)
    value = np.zeros_like(profit)
    previous = np.zeros_like(profit)
    for month in range(1, months + 1):
        cumulative = expected_purchases(purchases, month * periods_per_month, frequency, recency, T)
        value += (cumulative - previous) * profit / (1.0 + monthly_discount_rate) ** month
        previous = cumulative
    return value
