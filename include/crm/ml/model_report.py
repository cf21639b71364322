"""The model report: one self-contained HTML page per trained version, the baseline beside it.

``$CRM_HOME/models/<name>/<version>.html``: the out-of-time (or holdout) metrics table, ROC and
precision-recall curves, the calibration (reliability) chart, cumulative gains and lift by
decile, permutation importance on the test set (PR AUC lost when a column is shuffled), the
hyper-parameter candidates and the split. plotly.js is inlined once; no CDN, no link out, so
it opens from disk without a network, like the daily report.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from jinja2 import Environment
from markupsafe import Markup
from sklearn.inspection import permutation_importance
from sklearn.metrics import precision_recall_curve, roc_curve

from crm.ml.evaluation import calibration_table, gains_table

__all__ = ["render", "report_path", "write_report"]

MODEL, BASELINE = "#db0011", "#6b7b8c"
METRIC_LABELS = {
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC (average precision)",
    "brier": "Brier score (lower is better)",
    "top_decile_lift": "Top-decile lift",
    "top_decile_capture": "Top-decile capture rate",
    "ece": "Expected calibration error (lower is better)",
    "base_rate": "Churn rate in the test set",
    "n": "Test rows",
    "positives": "Test churners",
}

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ name }} model {{ version }}</title>
<style>
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 0 16px 40px; color: #222; }
header { border-bottom: 3px solid #db0011; padding: 12px 0; }
h1 { margin: 0; font-size: 24px; } h2 { margin-top: 32px; border-bottom: 1px solid #ddd; }
.note { color: #555; margin: 4px 0; } table { border-collapse: collapse; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 4px 10px; text-align: right; } th:first-child, td:first-child { text-align: left; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; }
</style></head>
<body><header><h1>{{ name }} model, version {{ version }}</h1>
<p class="note">Built {{ built }}. {{ split_note }}</p>
{% if registry %}<p class="note">Registry: {{ registry }}</p>{% endif %}</header>
<section><h2>Metrics on the test set: model vs baseline</h2>
<p class="note">Model: calibrated ({{ calibration }}) HistGradientBoosting on {{ n_features }} columns.
Baseline: logistic regression on {{ baseline_columns }}. Same test rows for both.</p>
<table><tr><th>Metric</th><th>Model</th><th>Baseline</th></tr>
{% for m in metrics %}<tr><td>{{ m.label }}</td><td>{{ m.model }}</td><td>{{ m.baseline }}</td></tr>
{% endfor %}</table></section>
<section><h2>Ranking</h2><div class="grid">{% for f in ranking %}<div>{{ f }}</div>{% endfor %}</div></section>
<section><h2>Calibration</h2>
<p class="note">Ten equal-width bins of predicted probability; a calibrated model sits on the diagonal.</p>
{{ calibration_fig }}</section>
<section><h2>Lift</h2><div class="grid">{% for f in lift %}<div>{{ f }}</div>{% endfor %}</div></section>
<section><h2>Feature importance</h2>
<p class="note">Permutation importance on the test set: the drop in PR AUC when one input column is
shuffled ({{ repeats }} repeats; bars show the mean, whiskers one standard deviation).</p>
{{ importance_fig }}</section>
<section><h2>Training</h2>
<p class="note">Hyper-parameter candidates, scored by mean PR AUC on {{ folds_note }}.</p>
<table><tr>{% for c in search_columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in search_rows %}<tr>{% for v in r %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}</table>
<p class="note">Numeric: {{ numeric }}.</p><p class="note">Categorical: {{ categorical }}.</p>
<p class="note">Excluded: {{ excluded }}.</p></section>
</body></html>
"""


def report_path(name: str, version: str, home: Path | None = None) -> Path:
    if home is None:
        from crm.settings import get_settings

        home = get_settings().home
    return Path(home) / "models" / name / f"{version}.html"


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if isinstance(value, int | np.integer):
        return f"{value:,}"
    return f"{value:.4f}"


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        height=420,
        margin={"l": 50, "r": 20, "t": 50, "b": 50},
        legend={"x": 0.55, "y": 0.05},
        template="plotly_white",
    )
    return fig


def _roc(y, p, pb) -> go.Figure:
    fig = go.Figure()
    for label, scores, color in (("model", p, MODEL), ("baseline", pb, BASELINE)):
        fpr, tpr, _ = roc_curve(y, scores)
        fig.add_scatter(x=fpr, y=tpr, name=label, line={"color": color})
    fig.add_scatter(x=[0, 1], y=[0, 1], name="random", line={"dash": "dot", "color": "#aaa"})
    return _layout(fig, "ROC curve", "False positive rate", "True positive rate")


def _pr(y, p, pb) -> go.Figure:
    fig = go.Figure()
    for label, scores, color in (("model", p, MODEL), ("baseline", pb, BASELINE)):
        precision, recall, _ = precision_recall_curve(y, scores)
        fig.add_scatter(x=recall, y=precision, name=label, line={"color": color, "shape": "hv"})
    rate = float(np.mean(y))
    fig.add_scatter(
        x=[0, 1], y=[rate, rate], name=f"base rate {rate:.1%}", line={"dash": "dot", "color": "#aaa"}
    )
    return _layout(fig, "Precision-recall curve", "Recall", "Precision")


def _calibration(y, p, pb) -> go.Figure:
    fig = go.Figure()
    for label, scores, color in (("model", p, MODEL), ("baseline", pb, BASELINE)):
        t = calibration_table(y, scores).dropna()
        fig.add_scatter(
            x=t["mean_predicted"],
            y=t["observed_rate"],
            name=label,
            mode="lines+markers",
            line={"color": color},
            customdata=t["count"],
            hovertemplate="predicted %{x:.3f}<br>observed %{y:.3f}<br>%{customdata} rows",
        )
    fig.add_scatter(x=[0, 1], y=[0, 1], name="perfect", line={"dash": "dot", "color": "#aaa"})
    return _layout(fig, "Reliability", "Mean predicted churn probability", "Observed churn rate")


def _lift(y, p, pb) -> list[go.Figure]:
    gains = go.Figure()
    lift = go.Figure()
    for label, scores, color in (("model", p, MODEL), ("baseline", pb, BASELINE)):
        t = gains_table(y, scores)
        gains.add_scatter(
            x=[0, *t["fraction"]],
            y=[0, *t["cumulative_capture"]],
            name=label,
            mode="lines+markers",
            line={"color": color},
        )
        lift.add_bar(x=t["group"], y=t["lift"], name=label, marker_color=color)
    gains.add_scatter(x=[0, 1], y=[0, 1], name="random", line={"dash": "dot", "color": "#aaa"})
    lift.add_hline(y=1, line_dash="dot", line_color="#aaa")
    return [
        _layout(
            gains,
            "Cumulative gains (churners reached)",
            "Share of customers contacted, riskiest first",
            "Share of churners reached",
        ),
        _layout(lift, "Lift by decile (1 = riskiest)", "Decile", "Churn rate / base rate"),
    ]


def _importance(result, repeats: int, seed: int) -> go.Figure:
    X, y = result.X_test, result.y_test
    imp = permutation_importance(
        result.model, X, y, scoring="average_precision", n_repeats=repeats, random_state=seed
    )
    order = np.argsort(imp.importances_mean)
    fig = go.Figure(
        go.Bar(
            x=imp.importances_mean[order],
            y=np.asarray(X.columns)[order],
            orientation="h",
            error_x={"type": "data", "array": imp.importances_std[order]},
            marker_color=MODEL,
        )
    )
    fig = _layout(fig, "Permutation importance (test set)", "PR AUC lost when shuffled", "")
    fig.update_layout(height=max(320, 26 * len(order) + 120), showlegend=False)
    return fig


def _split_note(result) -> str:
    w = result.split.window()
    if w["split"] == "out-of-time":
        gap = f", gap {w['gap'][0]}..{w['gap'][1]} left out" if w["gap"] else ""
        return (
            f"Out-of-time validation on {result.time_column!r}: trained on {w['train'][0]}..{w['train'][1]} "
            f"({w['train_rows']:,} rows), tested on {w['test'][0]}..{w['test'][1]} ({w['test_rows']:,} rows)"
            f"{gap}; no test period is in training."
        )
    return (
        f"No time column: a stratified random holdout ({w['train_rows']:,} training rows, {w['test_rows']:,} "
        "test rows). It measures in-time generalisation only; give a time column for an out-of-time test."
    )


def render(
    result,
    name: str,
    version: str,
    *,
    registry: str | None = None,
    built: dt.datetime | None = None,
    importance_repeats: int = 5,
    seed: int = 0,
) -> str:
    """The page as one HTML string."""
    built = built or dt.datetime.now().astimezone()
    y, p, pb = result.y_test, result.p_test, result.p_baseline
    first = [True]

    def html(fig: go.Figure) -> Markup:
        out = fig.to_html(full_html=False, include_plotlyjs=first[0], config={"displaylogo": False})
        first[0] = False
        return Markup(out)

    metrics = [
        {
            "label": label,
            "model": _fmt(result.metrics.get(k)),
            "baseline": _fmt(result.baseline_metrics.get(k)),
        }
        for k, label in METRIC_LABELS.items()
    ]
    search: pd.DataFrame = result.search
    search_rows = [
        [_fmt(v) if isinstance(v, float) else v for v in row] for row in search.itertuples(index=False)
    ]
    folds_note = (
        "forward-chaining folds over the training periods"
        if result.time_column
        else "stratified k-fold (no time column)"
    )
    excluded = ", ".join(f"{c} ({why})" for c, why in result.columns.excluded.items())
    two_class = 0 < y.sum() < y.size
    ranking = [html(_roc(y, p, pb)), html(_pr(y, p, pb))] if two_class else []
    calibration_fig = html(_calibration(y, p, pb))
    lift = [html(f) for f in _lift(y, p, pb)] if two_class else []
    importance_fig = html(_importance(result, importance_repeats, seed)) if two_class else ""
    env = Environment(autoescape=True)
    return env.from_string(TEMPLATE).render(
        name=name,
        version=version,
        built=f"{built:%Y-%m-%d %H:%M %Z}",
        split_note=_split_note(result),
        registry=registry,
        calibration=result.calibration_method,
        n_features=len(result.columns.features),
        baseline_columns=", ".join(result.baseline_columns),
        metrics=metrics,
        ranking=ranking,
        calibration_fig=calibration_fig,
        lift=lift,
        importance_fig=importance_fig,
        repeats=importance_repeats,
        folds_note=folds_note,
        search_columns=list(search.columns),
        search_rows=search_rows,
        numeric=", ".join(result.columns.numeric) or "none",
        categorical=", ".join(result.columns.categorical) or "none",
        excluded=excluded,
    )


def write_report(
    result,
    name: str,
    version: str,
    *,
    home: Path | None = None,
    out: Path | None = None,
    registry: str | None = None,
    n_threads: int | None = 1,
) -> Path:
    """Write the page to ``out`` or ``$CRM_HOME/models/<name>/<version>.html``; return its path."""
    from threadpoolctl import threadpool_limits

    path = out or report_path(name, version, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with threadpool_limits(limits=n_threads, user_api="openmp"):
        page = render(result, name, version, registry=registry)
    path.write_text(page, encoding="utf-8")
    return path
