"""The daily report's sections: each a title, its plotly figures and one-line notes.

A section whose data is absent for the day gets a note saying so instead of a figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from crm.reporting.data import ABC_ORDER, CHANNELS, TIER_ORDER, ReportData

QUADRANT_ORDER = ["A", "B", "C", "D", "not segmented"]
POSITION_COLOURS = {"top_decile": "#1a9850", "above_median": "#91cf60", "below_median": "#d73027"}
LAYOUT = {"template": "plotly_white", "height": 360, "margin": {"l": 60, "r": 20, "t": 50, "b": 50}}


@dataclass
class Section:
    title: str
    figures: list[go.Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # one line each, e.g. why a plot is absent
    items: list[str] = field(default_factory=list)  # e.g. the failed checks


def _ordered(values, order: list[str]) -> list:
    return sorted(values, key=lambda v: (order.index(v) if v in order else len(order), str(v)))


def _shares(df: pd.DataFrame, by: str, order: list[str]) -> pd.DataFrame:
    g = df.groupby(by, as_index=False)[["customers", "trb_hkd"]].sum()
    g = g.set_index(by).loc[_ordered(g[by], order)].reset_index()
    g["customer_share"] = g["customers"] / max(g["customers"].sum(), 1)
    g["value_share"] = g["trb_hkd"] / (g["trb_hkd"].sum() or 1)
    return g


def _count_and_share(g: pd.DataFrame, by: str, title: str) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Customers", "Share of customers vs share of TRB"))
    fig.add_trace(
        go.Bar(y=g[by], x=g["customers"], orientation="h", name="customers", text=g["customers"]), 1, 1
    )
    for col, name in (("customer_share", "customers"), ("value_share", "TRB (HKD)")):
        fig.add_trace(go.Bar(y=g[by], x=g[col], orientation="h", name=f"share of {name}"), 1, 2)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(tickformat=".0%", row=1, col=2)
    return fig.update_layout(title=title, barmode="group", **LAYOUT)


def pyramid(data: ReportData) -> Section:
    s = Section("1. Customer pyramid and LV quadrants")
    if data.segments.empty:
        s.notes.append(f"No customer segments for {data.day} (customer_segments not built for the day).")
        return s
    abc = _shares(data.segments, "abc_tier", ABC_ORDER)
    lv = _shares(data.segments, "lv_quadrant", QUADRANT_ORDER)
    s.figures += [
        _count_and_share(abc, "abc_tier", "ABC pyramid: customers and value share by tier"),
        _count_and_share(lv, "lv_quadrant", "Loyalty-value quadrants: customers and value share"),
    ]
    s.notes.append(f"{int(abc['customers'].sum()):,} customers, TRB HKD {abc['trb_hkd'].sum():,.0f}.")
    return s


def _heatmap(moves: pd.DataFrame, title: str) -> go.Figure:
    pivot = moves.pivot_table(index="from_segment", columns="to_segment", values="customers", aggfunc="sum")
    pivot = pivot.reindex(
        index=_ordered(pivot.index, TIER_ORDER), columns=_ordered(pivot.columns, TIER_ORDER)
    )
    z = pivot.fillna(0).astype(int)
    fig = go.Figure(
        go.Heatmap(
            z=z.values,
            x=list(z.columns),
            y=list(z.index),
            colorscale="Blues",
            text=z.values,
            texttemplate="%{text}",
            hovertemplate="%{y} -> %{x}: %{z} customers<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", title="from")
    fig.update_xaxes(title="to")
    return fig.update_layout(title=title, **LAYOUT)


def migration(data: ReportData) -> Section:
    s = Section("2. TRB tier movement")
    if data.migration_day.empty:
        s.notes.append("No earlier snapshot of customer_segments is kept: no day-on-day movement.")
    else:
        m = data.migration_day
        moved = int(m.loc[m["from_segment"] != m["to_segment"], "customers"].sum())
        s.figures.append(_heatmap(m, f"Day on day: tier on {data.previous_snapshot} -> {data.day}"))
        s.notes.append(f"{moved:,} customers changed TRB tier since {data.previous_snapshot}.")
    if data.migration_month.empty:
        s.notes.append(f"No month-on-month segment migration for {data.day:%Y-%m}.")
    else:
        s.figures.append(
            _heatmap(data.migration_month, f"Month on month: end of last month -> {data.day:%Y-%m} so far")
        )
    return s


def churn(data: ReportData) -> Section:
    s = Section("3. Churn risk and value at risk")
    if data.churn.empty and data.value_at_risk.empty:
        s.notes.append(f"No churn scores and no RM worklist for {data.day}.")
        return s
    if data.churn_scored == 0:
        s.notes.append(
            f"No churn model scores for {data.day} yet: risk below is the worklist proxy"
            " (base rate scaled by warning signs)."
        )
    if data.churn.empty:
        s.notes.append(f"No churn risk for {data.day} (rm_worklist empty).")
    else:
        fig = go.Figure()
        for quadrant in _ordered(data.churn["lv_quadrant"].unique(), QUADRANT_ORDER):
            fig.add_trace(
                go.Box(y=data.churn.loc[data.churn["lv_quadrant"] == quadrant, "churn_risk"], name=quadrant)
            )
        fig.update_yaxes(title="churn probability", tickformat=".0%")
        s.figures.append(fig.update_layout(title="Churn risk by LV quadrant", showlegend=False, **LAYOUT))
    v = data.value_at_risk
    if v.empty:
        s.notes.append(f"No RM worklist for {data.day}.")
    else:
        fig = go.Figure(
            [
                go.Bar(x=v["rm_id"], y=v["value_at_risk_hkd"], name="all worklist customers"),
                go.Bar(x=v["rm_id"], y=v["top_customer_hkd"], name="top customer"),
            ]
        )
        fig.update_yaxes(title="value at risk (HKD)")
        s.figures.append(
            fig.update_layout(title="Value at risk per RM (top 20 RMs)", barmode="group", **LAYOUT)
        )
    return s


def channels(data: ReportData) -> Section:
    s = Section("4. Channel mix")
    c = data.channels
    if c.empty or c[CHANNELS].to_numpy().sum() == 0:
        s.notes.append(f"No channel usage up to {data.day:%Y-%m}.")
        return s
    totals = c[CHANNELS].sum(axis=1).replace(0, 1)
    months = pd.to_datetime(c["month_start"]).dt.strftime("%Y-%m")
    fig = go.Figure(
        [
            go.Bar(
                x=months,
                y=c[ch] / totals,
                name=ch.replace("_", " "),
                customdata=c[ch],
                hovertemplate="%{x}: %{y:.1%} (%{customdata:,.0f})<extra></extra>",
            )
            for ch in CHANNELS
        ]
    )
    fig.update_yaxes(tickformat=".0%", title="share of touchpoints")
    s.figures.append(
        fig.update_layout(
            title="Channel mix by month (month to date for the last)", barmode="stack", **LAYOUT
        )
    )
    return s


def service(data: ReportData) -> Section:
    s = Section("5. Service quality (CE11)")
    q = data.service
    if q.empty:
        s.notes.append(f"No CE11 survey responses up to {data.day:%Y-%m}.")
        return s
    branches = q[q["branch_id"] != "ALL"]
    fig = go.Figure(
        go.Bar(
            x=branches["branch_id"],
            y=branches["mean_satisfaction"],
            customdata=branches["responses"],
            marker_color=[POSITION_COLOURS.get(p, "#999") for p in branches["benchmark_position"]],
            hovertemplate="%{x}: %{y:.2f} (%{customdata} responses)<extra></extra>",
            name="branch mean",
        )
    )
    first = q.iloc[0]
    for col, label in (("asia_p50_mean", "Asia p50"), ("asia_p90_mean", "Asia p90"), ("hsbc_mean", "HSBC")):
        fig.add_hline(y=first[col], line_dash="dash", annotation_text=f"{label} {first[col]:.2f}")
    bank = q[q["branch_id"] == "ALL"]
    if not bank.empty:
        fig.add_hline(
            y=bank["mean_satisfaction"].iloc[0],
            line_color="#333",
            annotation_text=f"bank {bank['mean_satisfaction'].iloc[0]:.2f}",
            annotation_position="bottom right",
        )
    fig.update_yaxes(range=[1, 5.2], title="mean satisfaction (1-5)")
    title = f"CE11 by branch, {pd.Timestamp(first['month_start']):%Y-%m}, against the benchmark"
    s.figures.append(fig.update_layout(title=title, showlegend=False, **LAYOUT))
    return s


def quality(data: ReportData) -> Section:
    s = Section("6. Data quality of the run")
    g = data.gates
    if g.empty:
        s.notes.append(f"No quality gate ran for {data.day}.")
    else:
        status = g.assign(
            status=g.apply(
                lambda r: "critical failure" if not r.success else "warnings" if r.warnings else "passed",
                axis=1,
            )
        )
        counts = status.groupby(["gate", "status"]).size().unstack(fill_value=0)
        colours = {"passed": "#1a9850", "warnings": "#fdae61", "critical failure": "#d73027"}
        fig = go.Figure(
            [
                go.Bar(x=list(counts.index), y=counts[c], name=c, marker_color=colours[c])
                for c in colours
                if c in counts
            ]
        )
        fig.update_yaxes(title="suites (feeds / mart groups)")
        s.figures.append(fig.update_layout(title="Quality gates", barmode="stack", **LAYOUT))
        s.notes.append(
            f"{int((g['success']).sum())} of {len(g)} suites passed; {int(g['critical_failures'].sum())} critical"
            f" failures, {int(g['warnings'].sum())} warnings."
        )
        s.items += [
            f"{r.severity.upper()} {r.gate}.{r.subject}: {r.check_name}"
            + (f" ({r.column_name})" if r.column_name else "")
            + (f", {int(r.unexpected_count)} unexpected" if pd.notna(r.unexpected_count) else "")
            for r in data.failed_checks.itertuples()
        ]
    lo = data.loads
    if lo.empty:
        s.notes.append(f"No feed loaded for {data.day}.")
    else:
        fig = go.Figure(
            go.Bar(
                x=lo["feed"],
                y=lo["rows_quarantined"],
                customdata=lo["rows_loaded"],
                name="quarantined",
                hovertemplate="%{x}: %{y} quarantined, %{customdata} loaded<extra></extra>",
            )
        )
        s.figures.append(fig.update_layout(title="Rows quarantined per feed", **LAYOUT))
        s.notes.append(
            f"{int(lo['rows_quarantined'].sum()):,} rows quarantined, {int(lo['rows_loaded'].sum()):,} loaded."
        )
        s.items += [f"feed {r.feed}: {r.status}" for r in lo.itertuples() if r.status != "loaded"]
    b = data.recon_breaks
    if b.empty:
        s.notes.append(
            f"No reconciliation breaks for {data.day}."
            if data.recon_ran
            else f"No reconciliation ran for {data.day}."
        )
    else:
        fig = go.Figure(
            [
                go.Bar(x=part["feed"] + " " + part["check_name"], y=part["breaks"], name=label)
                for label, part in (("unexplained", b[~b["explained"]]), ("explained", b[b["explained"]]))
                if not part.empty
            ]
        )
        s.figures.append(fig.update_layout(title="Reconciliation breaks", barmode="stack", **LAYOUT))
    return s


def sections(data: ReportData) -> list[Section]:
    return [pyramid(data), migration(data), churn(data), channels(data), service(data), quality(data)]
