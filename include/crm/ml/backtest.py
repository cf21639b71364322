"""Backtest of the lifetime-value estimates on a past cohort.

At a cohort date C (a month-end snapshot of ``marts.customer_360``) every estimate is computed
from data up to C only, then compared with the margin each customer actually earned over
the H months after C (H = 12 by default):

* ``margin_survival`` (``crm.ml.clv``'s definition over H months): the monthly margin at C
  (``profit_annualised_hkd / 12``) x the churn model's survival, discounted monthly. The churn
  probability is the registered champion's score at C when there is one, else the base rate
  of the churn labels whose horizon had elapsed by C.
* ``probabilistic`` (``crm.ml.clv_probabilistic``): BG/NBD on the days each customer
  transacted (customer-initiated, up to C) and Gamma-Gamma on the HKD turnover of those days,
  over H months; turnover is turned into margin by the portfolio's margin per HKD of turnover
  over the 90 days to C (one ratio: it rescales, never reorders).
* ``naive``: the last 3 months' margin (``profit_window_hkd`` at C, a 90-day window) / 3 per
  month x H, discounted the same way.

Realised: for each month end M_i after C (i = 1..H) the same monthly margin,
``profit_annualised_hkd(M_i) / 12``, discounted by (1 + r)^i; a customer missing from a
snapshot (gone) earns 0 that month, so a leaver realises what was earned until leaving. The
90-day windows of the first two months reach back before C (see docs/ml.md).

Metrics per estimate: Spearman rank correlation with the realised value, a decile calibration
table (mean predicted vs mean realised per predicted decile) and the Gini of value captured
(Lorenz curve of the realised value sorted by prediction: 2 x area - 1; ``gini_normalised``
divides by the Gini of the perfect ordering).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

DAYS_PER_MONTH = 30.4375
ESTIMATES = ("margin_survival", "probabilistic", "naive")
# Customer-initiated transactions (the churn labels' definition): bank postings excluded.
CUSTOMER_DAYS_SQL = """
select customer_id, business_date, coalesce(sum(amount_hkd), 0)::float8 as amount_hkd
from marts.fct_transactions
where business_date <= %(c)s and customer_id is not null
  and (channel <> 'system' or txn_type = 'card_purchase')
group by customer_id, business_date
"""
COHORT_SQL = """
select customer_id, profit_annualised_hkd::float8 as profit_annualised_hkd,
       profit_window_hkd::float8 as profit_window_hkd
from marts.customer_360
where snapshot_date = %(c)s and products_held > 0
"""
REALISED_SQL = """
with ends as (
    select i, (date_trunc('month', %(c)s::timestamp) + make_interval(months => i + 1) - interval '1 day')::date as month_end
    from generate_series(1, %(months)s) as i
)
select cohort.customer_id,
       sum(coalesce(s.profit_annualised_hkd, 0)::float8 / 12.0 / (1 + %(rate)s) ^ ends.i) as realised
from unnest(%(ids)s::text[]) as cohort(customer_id)
cross join ends
left join marts.customer_360 as s
    on s.customer_id = cohort.customer_id and s.snapshot_date = ends.month_end
group by cohort.customer_id
"""


@dataclass
class BacktestResult:
    cohort: dt.date
    months: int
    frame: pd.DataFrame  # one row per customer: the estimates and realised
    metrics: dict[str, dict[str, float]]
    calibration: dict[str, list[dict[str, float]]]
    churn_source: str
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "cohort": self.cohort.isoformat(),
            "months": self.months,
            "customers": len(self.frame),
            "churn_source": self.churn_source,
            "metrics": self.metrics,
            "calibration": self.calibration,
            "notes": self.notes,
        }


def month_ends(conn) -> list[dt.date]:
    """Month-end snapshot dates of customer_360, oldest first."""
    rows = conn.execute(
        "select distinct snapshot_date from marts.customer_360"
        " where snapshot_date = (date_trunc('month', snapshot_date::timestamp) + interval '1 month - 1 day')::date"
        " order by 1"
    ).fetchall()
    return [r[0] for r in rows]


def check_cohort(conn, cohort: dt.date, months: int) -> list[str]:
    """Raise unless C is a month-end snapshot followed by H month-end snapshots; notes."""
    if months < 1:
        raise ValueError("months must be at least 1")
    ends = month_ends(conn)
    if cohort not in ends:
        raise ValueError(f"{cohort} is not a month-end snapshot of marts.customer_360")
    after = [d for d in ends if d > cohort]
    if len(after) < months:
        raise ValueError(f"{cohort} has {len(after)} month-end snapshots after it; {months} needed")
    notes = []
    if months < 12:
        notes.append(f"short horizon: {months} months (12 is the default)")
        log.warning("backtest horizon of %d months (< 12): a small history", months)
    return notes


def _annuity(q: np.ndarray | float, months: int) -> np.ndarray:
    """sum_{t=1..H} q^t."""
    return sum(np.power(q, t) for t in range(1, months + 1))


def churn_probability(conn, cohort: dt.date, ids: list[str], horizon_days: int, name: str = "churn"):
    """(probabilities per customer, source, notes): the champion's scores at C, else the base
    rate of labels matured by C (as_of_date + horizon <= C)."""
    from crm.ml.registry import champion

    notes: list[str] = []
    rate = conn.execute(
        "select avg(churned::int)::float8, count(*) from marts.ml_churn_labels"
        " where label_available and as_of_date + %s <= %s",
        (horizon_days, cohort),
    ).fetchone()
    if rate[0] is None:
        raise ValueError(f"no churn label matured by {cohort}: no base rate")
    base = pd.Series(rate[0], index=ids, dtype=float)
    champ = champion(conn, name)
    if champ is not None:
        scores = dict(
            conn.execute(
                "select customer_id, churn_probability::float8 from ml.churn_scores"
                " where as_of_date = %s and model_version = %s",
                (cohort, champ["version"]),
            ).fetchall()
        )
        if scores:
            last = (champ["training_window"] or {}).get("test") or (champ["training_window"] or {}).get(
                "train"
            )
            # A monthly snapshot's label matures horizon_days after its month's end.
            if last and str(last[-1]) >= (cohort - dt.timedelta(days=horizon_days + 31)).isoformat():
                notes.append(f"champion {champ['version']} learnt labels reaching past {cohort}: optimistic")
            probs = pd.Series([scores.get(c, rate[0]) for c in ids], index=ids, dtype=float)
            return probs, f"champion {champ['version']} scores at {cohort} ({len(scores):,})", notes
    return base, f"base rate {rate[0]:.4f} of {rate[1]:,} labels matured by {cohort}", notes


def probabilistic_estimate(
    conn, cohort: dt.date, ids: list[str], months: int, rate: float, profit_90d: float
):
    """BG/NBD x Gamma-Gamma value over H months per customer, in margin HKD (see module doc)."""
    from crm.ml.clv_probabilistic import fit_bgnbd, fit_gamma_gamma

    days = pd.DataFrame(
        conn.execute(CUSTOMER_DAYS_SQL, {"c": cohort}).fetchall(), columns=["customer_id", "day", "amount"]
    )
    if days.empty:
        raise ValueError(f"no customer transaction up to {cohort}")
    days["day"] = pd.to_datetime(days["day"])
    days = days.sort_values(["customer_id", "day"])
    g = days.groupby("customer_id")
    first, last = g["day"].min(), g["day"].max()
    end = pd.Timestamp(cohort)
    x = (g.size() - 1).astype(float)
    t_x = (last - first).dt.days.astype(float)
    big_t = (end - first).dt.days.astype(float).clip(lower=1.0)
    first_amount = g["amount"].first()
    m = ((g["amount"].sum() - first_amount) / x.where(x > 0)).fillna(0.0)
    bg = fit_bgnbd(x, t_x, big_t)
    repeat = (x > 0) & (m > 0)
    gg = fit_gamma_gamma(x[repeat], m[repeat])
    turnover, fallback = lifetime_turnover(bg, gg, x, t_x, big_t, m.where(x > 0, 0.0), months, rate)
    recent = days.loc[days["day"] > end - pd.Timedelta(days=90), "amount"].sum()
    ratio = profit_90d / recent if recent else 0.0
    notes = [
        f"BG/NBD r={bg.r:.3g} alpha={bg.alpha:.3g} a={bg.a:.3g} b={bg.b:.3g} on {bg.n_customers:,} customers;"
        f" Gamma-Gamma p={gg.p:.3g} q={gg.q:.3g} v={gg.v:.3g} on {gg.n_customers:,}; margin/turnover {ratio:.5f}"
    ]
    if fallback:
        notes.append(f"expected purchases by quadrature for {fallback:,} customers (closed form overflowed)")
    # A cohort customer without a transaction up to C has no purchase history: predicted 0.
    missing = ~pd.Index(ids).isin(turnover.index)
    return turnover.reindex(ids).where(~missing, 0.0) * ratio, notes


def expected_purchases_quadrature(bg, t: float, x, t_x, big_t, nodes: int = 200) -> np.ndarray:
    """BG/NBD E[X(t) | x, t_x, T] = P(alive) E_p[(1 - ((α+T)/(α+T+pt))^(r+x)) / p], p ~ Beta(a, b+x)
    (FHL 2005 eq. 7 averaged over the posterior; λ integrated out), by ``nodes`` mid-quantiles of p.
    The integral the closed form solves; finite where its hypergeometric overflows (a and b in
    the thousands: almost no dropout, as a fit on a short history can give)."""
    from scipy.stats import beta

    from crm.ml.clv_probabilistic import probability_alive

    x, t_x, big_t = (np.asarray(v, dtype=float) for v in (x, t_x, big_t))
    u = (np.arange(nodes) + 0.5) / nodes
    p = beta.ppf(u[None, :], bg.a, bg.b + x[:, None])
    log_ratio = np.log(bg.alpha + big_t)[:, None] - np.log(bg.alpha + big_t[:, None] + p * t)
    inner = -np.expm1((bg.r + x)[:, None] * log_ratio) / p
    return probability_alive(bg, x, t_x, big_t) * inner.mean(axis=1)


def lifetime_turnover(bg, gg, x, t_x, big_t, m, months: int, rate: float) -> tuple[pd.Series, int]:
    """``customer_lifetime_value``'s sum, with expected purchases by quadrature for the customers
    whose closed form is not finite; (values, how many used the quadrature)."""
    from crm.ml.clv_probabilistic import conditional_expected_average_profit, expected_purchases

    profit = conditional_expected_average_profit(gg, x, m)
    value, previous, fallback = np.zeros(len(x)), np.zeros(len(x)), np.zeros(len(x), dtype=bool)
    for month in range(1, months + 1):
        t = month * DAYS_PER_MONTH
        with np.errstate(invalid="ignore", over="ignore"):
            cumulative = expected_purchases(bg, t, x, t_x, big_t)
        bad = ~np.isfinite(cumulative)
        if bad.any():
            cumulative[bad] = expected_purchases_quadrature(bg, t, x[bad], t_x[bad], big_t[bad])
            fallback |= bad
        value += (cumulative - previous) * profit / (1.0 + rate) ** month
        previous = cumulative
    if not np.all(np.isfinite(value)):
        raise ValueError("the probabilistic lifetime value is not finite")
    return pd.Series(value, index=x.index), int(fallback.sum())


def gini(pred: np.ndarray, realised: np.ndarray) -> float:
    """2 x area under the Lorenz curve of realised value sorted by prediction (desc) - 1."""
    order = np.argsort(-pred, kind="stable")
    total = realised.sum()
    if total == 0:
        return float("nan")
    captured = np.concatenate([[0.0], np.cumsum(realised[order]) / total])
    share = np.linspace(0.0, 1.0, len(captured))
    area = float(np.sum((captured[1:] + captured[:-1]) / 2 * np.diff(share)))
    return 2 * area - 1


def score(frame: pd.DataFrame, estimates=ESTIMATES) -> tuple[dict, dict]:
    """Spearman, Gini (raw and normalised), totals; and the decile calibration table."""
    from scipy.stats import spearmanr

    metrics, calibration = {}, {}
    realised = frame["realised"].to_numpy(float)
    perfect = gini(realised, realised)
    for name in estimates:
        pred = frame[name].to_numpy(float)
        if np.isnan(pred).any():
            metrics[name] = dict.fromkeys(("spearman", "gini", "gini_normalised"), float("nan"))
            metrics[name] |= {"mean_predicted": float("nan"), "mean_realised": float(realised.mean())}
            calibration[name] = []
            continue
        g = gini(pred, realised)
        metrics[name] = {
            "spearman": float(spearmanr(pred, realised).statistic),
            "gini": g,
            "gini_normalised": g / perfect if perfect else float("nan"),
            "mean_predicted": float(pred.mean()),
            "mean_realised": float(realised.mean()),
        }
        decile = pd.qcut(pd.Series(pred).rank(method="first"), 10, labels=range(1, 11))
        table = pd.DataFrame({"decile": decile, "predicted": pred, "realised": realised})
        rows = table.groupby("decile", observed=True).agg(
            customers=("predicted", "size"), predicted=("predicted", "mean"), realised=("realised", "mean")
        )
        calibration[name] = [
            {
                "decile": int(d),
                "customers": int(r.customers),
                "predicted": float(r.predicted),
                "realised": float(r.realised),
            }
            for d, r in rows.iterrows()
        ]
    return metrics, calibration


def run_backtest(conn, cohort: dt.date, months: int = 12, *, name: str = "churn") -> BacktestResult:
    """The backtest at ``cohort`` over ``months`` (conn: a psycopg connection as crm_ml)."""
    from crm.project_vars import dbt_vars

    v = dbt_vars()
    rate, horizon = float(v["clv_monthly_discount_rate"]), int(v["churn_horizon_days"])
    notes = check_cohort(conn, cohort, months)
    frame = pd.DataFrame(
        conn.execute(COHORT_SQL, {"c": cohort}).fetchall(),
        columns=["customer_id", "profit_annualised_hkd", "profit_window_hkd"],
    ).set_index("customer_id")
    if len(frame) < 10:
        raise ValueError(f"{len(frame)} customers with an open product at {cohort}: too few to backtest")
    ids = frame.index.tolist()
    p, churn_source, churn_notes = churn_probability(conn, cohort, ids, horizon, name)
    q = np.power(1.0 - p.to_numpy(float), DAYS_PER_MONTH / horizon) / (1 + rate)
    frame["margin_survival"] = frame["profit_annualised_hkd"] / 12.0 * _annuity(q, months)
    try:
        frame["probabilistic"], prob_notes = probabilistic_estimate(
            conn, cohort, ids, months, rate, float(frame["profit_window_hkd"].sum())
        )
    except ValueError as exc:  # e.g. no repeat buyer, or Gamma-Gamma q <= 1: report the others
        frame["probabilistic"], prob_notes = np.nan, [f"probabilistic estimate unavailable: {exc}"]
    frame["naive"] = frame["profit_window_hkd"] / 3.0 * _annuity(1 / (1 + rate), months)
    realised = dict(
        conn.execute(REALISED_SQL, {"c": cohort, "months": months, "rate": rate, "ids": ids}).fetchall()
    )
    frame["realised"] = frame.index.map(realised).astype(float)
    metrics, calibration = score(frame)
    return BacktestResult(
        cohort, months, frame, metrics, calibration, churn_source, notes + churn_notes + prob_notes
    )


def format_table(result: BacktestResult) -> str:
    """The metrics side by side, then each estimate's decile table."""
    lines = [f"{'metric':<18}" + "".join(f"{n:>17}" for n in ESTIMATES)]
    for key in ("spearman", "gini", "gini_normalised", "mean_predicted", "mean_realised"):
        lines.append(f"{key:<18}" + "".join(f"{result.metrics[n][key]:>17,.4f}" for n in ESTIMATES))
    lines.append(f"{'decile (pred/real)':<18}" + "".join(f"{n:>17}" for n in ESTIMATES))
    for i in range(10):
        cells = []
        for n in ESTIMATES:
            cal = result.calibration[n]
            cells.append(f"{cal[i]['predicted']:,.0f} / {cal[i]['realised']:,.0f}" if cal else "n/a")
        lines.append(f"{i + 1:<18}" + "".join(f"{c:>17}" for c in cells))
    return "\n".join(lines)


def write_report(result: BacktestResult, folder: Path) -> tuple[Path, Path]:
    """JSON (metrics, calibration, notes; no customer rows) and an HTML page with one figure
    (loading plotly.min.js from the same folder)."""
    from plotly.subplots import make_subplots

    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"clv-backtest-{result.cohort.isoformat()}-{result.months}m"
    data = result.as_dict()
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps(_finite(data), indent=2), encoding="utf-8")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Calibration by predicted decile", "Value captured"))
    realised = result.frame["realised"].to_numpy(float)
    for n in ESTIMATES:
        cal = result.calibration[n]
        if not cal:
            continue
        fig.add_scatter(x=[r["predicted"] for r in cal], y=[r["realised"] for r in cal], name=n, row=1, col=1)
        order = np.argsort(-result.frame[n].to_numpy(float), kind="stable")
        captured = np.cumsum(realised[order]) / realised.sum()
        step = max(1, len(captured) // 100)  # 100 points a curve keeps the page small
        share = np.arange(1, len(captured) + 1)[::step] / len(captured)
        fig.add_scatter(x=share, y=captured[::step], name=f"{n} (Lorenz)", row=1, col=2)
    fig.update_layout(template="plotly_white", height=420)
    table = format_table(result)
    html = (
        f"<html><head><meta charset='utf-8'><title>CLV backtest {result.cohort}</title></head><body>"
        f"<h1>CLV backtest: cohort {result.cohort}, {result.months} months, {len(result.frame):,} customers</h1>"
        f"<p>Churn probability: {result.churn_source}</p><pre>{table}</pre>"
        f"<ul>{''.join(f'<li>{n}</li>' for n in result.notes)}</ul>"
        + fig.to_html(full_html=False, include_plotlyjs="directory", config={"displaylogo": False})
        + "</body></html>"
    )
    # plotly.js once beside the reports (offline, no CDN) rather than 4.7 MB inlined in each page.
    script = folder / "plotly.min.js"
    if not script.exists():
        from plotly.offline import get_plotlyjs

        script.write_text(get_plotlyjs(), encoding="utf-8")
    html_path = stem.with_suffix(".html")
    html_path.write_text(html, encoding="utf-8")
    return json_path, html_path


def _finite(value):
    """NaN and infinities as null (JSON has neither)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value
