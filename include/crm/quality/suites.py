"""What each quality gate checks: its suites, from the feed registry and the dbt vars.

``crm dq suites`` writes them as the GX project in ``expectations/`` (``crm.quality.project``);
a test checks that the committed files are what the registry and dbt_project.yml give, as
for feeds.md. Each expectation carries its own ``check`` name
(what the fault ledger and ``dq.expectation_results`` call it) and ``severity`` in its
meta: the gate reads severity there, never in code.

The raw gate's figures (``raw_figures``: volume, distinct owners, non-null shares, scales,
freshness, repeats) are listed per feed in the meta of the one suite ``raw.profile``, with
their severity; ``crm.quality.profile`` measures them in one SQL pass per feed and bands
them against the feed's own past, and the suite's expectations judge the resulting
``dq.raw_profiles``. Checks that compare a day with another day or table are SQL
(``UnexpectedRowsExpectation``) relative to the batch's own business day.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crm.feeds import Feed, Registry, load_registry

GATES = ("raw", "recon", "mart")
URL_VARIABLE = "CRM_GX_WAREHOUSE_URL"  # set by the gate runner from the stage role's URL
RESULTS_VARIABLE = "CRM_GX_RESULTS_DIR"  # var/gx: validation results and Data Docs
DATASOURCE = "warehouse"

FRESHNESS_LAG_DAYS = 2  # the day's latest event may be this many days before the business day
# A segment's share may move day on day by SEGMENT_SHIFT_ABS of all customers or, if more,
# by SEGMENT_SHIFT_REL of its own size (a tier of 5 % that falls to 1.6 % collapsed).
SEGMENT_SHIFT_ABS = 0.02
SEGMENT_SHIFT_REL = 0.5
ABC_TOLERANCE = 0.005  # share of customers a tier may differ from its target


@dataclass(frozen=True)
class Check:
    """One expectation of a suite: what GX checks, under which name and severity."""

    name: str
    severity: str
    expectation: str  # GX expectation class name
    kwargs: dict[str, Any]

    def meta(self) -> dict[str, Any]:
        return {"check": self.name}


@dataclass(frozen=True)
class Figure:
    """One figure of a feed's day that the raw gate measures and judges (crm.quality.profile)."""

    name: str  # the check name results and the fault ledger use: raw.volume, raw.scale:amount
    severity: str
    kind: str  # row_count, distinct_count, non_null_share, scale, freshness_lag_days, stale_repeat
    column: str | None = None
    history: str | None = None  # "rows" (audit.load_log) or "observed" (earlier results): a band

    def meta(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


def raw_figures(feed: Feed) -> list[Figure]:
    """The raw gate of one feed: volume, completeness, distribution, freshness, repeats."""
    figures = [Figure("raw.volume", "critical", "row_count", history="rows")]
    # how many customers (accounts) the day's rows belong to: its first reference, else its key
    owner = next((c.name for c in feed.columns if c.references), feed.key[0])
    figures.append(Figure(f"raw.distinct:{owner}", "warning", "distinct_count", owner, "observed"))
    figures += [
        Figure(f"raw.null_rate:{c.name}", "warning", "non_null_share", c.name, "observed")
        for c in feed.columns
        if not c.required and c.name not in feed.pii
    ]
    # the registry's main amounts: a unit shift moves their typical magnitude
    figures += [Figure(f"raw.scale:{c}", "critical", "scale", c, "observed") for c in feed.scales]
    if any(c.not_future and c.type in ("date", "timestamp", "timestamptz") for c in feed.columns):
        figures.append(Figure("raw.freshness", "warning", "freshness_lag_days"))
    figures.append(Figure("raw.stale_repeat", "critical", "stale_repeat"))
    return figures


def raw_checks() -> list[Check]:
    """GX judges the day's profile (dq.raw_profiles): one expectation per severity, each
    listing the figures of that severity outside their band. One SQL pass per feed measures
    every figure; GX then validates ~100 figures with two queries instead of computing ~100
    expectations with ~100 queries over the raw rows (9x the load's time at 100,000 customers)."""
    return [
        Check(
            "raw.critical_figures" if severity == "critical" else "raw.warning_figures",
            severity,
            "UnexpectedRowsExpectation",
            {
                "unexpected_rows_query": (
                    "select feed, check_name, column_name, observed, min_value, max_value from {batch}"
                    f" where severity = '{severity}' and not passed order by feed, check_name"
                ),
                "description": f"every {severity} figure of the day's feeds is within its band"
                " (volume, distinct owners, non-null shares, scales, freshness, not a repeat)",
            },
        )
        for severity in ("critical", "warning")
    ]


def mart_checks() -> dict[str, list[Check]]:
    """The mart gate: one suite per mart it validates (the day's snapshot)."""
    from crm.project_vars import dbt_vars

    v = dbt_vars()
    targets = {
        "high_end": v["abc_high_end_share"],
        "major": v["abc_major_share"] - v["abc_high_end_share"],
        "ordinary": v["abc_ordinary_share"] - v["abc_major_share"],
        "small": 1 - v["abc_ordinary_share"],
    }
    expected = " union all ".join(
        f"select '{tier}' as abc_tier, {share} as target" for tier, share in targets.items()
    )
    segments = [
        Check(
            "mart.one_segment",
            "critical",
            "UnexpectedRowsExpectation",
            {
                "unexpected_rows_query": (
                    "select customer_id, lifecycle_stage, trb_tier, lv_quadrant from {batch}"
                    " where lifecycle_stage is distinct from 'churned'"
                    " and (lifecycle_stage is null or trb_tier is null or lv_quadrant is null)"
                ),
                "description": "every customer not churned has a lifecycle stage, a TRB tier and an LV quadrant",
            },
        )
    ]
    segments += [
        Check(
            "mart.one_row_per_customer", "critical", "ExpectColumnValuesToBeUnique", {"column": "customer_id"}
        ),
        Check(
            "mart.trb_finite_non_negative",
            "critical",
            "ExpectColumnValuesToBeBetween",
            {"column": "trb_hkd", "min_value": 0, "max_value": 1e15},
        ),
        Check(
            "mart.abc_shares",
            "critical",
            "UnexpectedRowsExpectation",
            {
                "unexpected_rows_query": (
                    f"with expected as ({expected}), actual as (select abc_tier, count(*)::numeric"
                    f" / sum(count(*)) over () as share from {{batch}} where abc_tier is not null group by abc_tier)"
                    f" select e.abc_tier, e.target, coalesce(a.share, 0) as share from expected e"
                    f" left join actual a using (abc_tier)"
                    f" where (select count(*) from {{batch}} where abc_tier is not null) >= 100"
                    f" and abs(coalesce(a.share, 0) - e.target) > {ABC_TOLERANCE}"
                ),
                "description": f"ABC tiers hold their target shares within {ABC_TOLERANCE:.1%}",
            },
        ),
        Check(
            "mart.segment_share_shift",
            "warning",
            "UnexpectedRowsExpectation",
            {
                "unexpected_rows_query": (
                    "with today as (select trb_tier, count(*)::numeric / sum(count(*)) over () as share,"
                    " max(snapshot_date) over () as day from {batch} group by trb_tier, snapshot_date),"
                    " before as (select trb_tier, count(*)::numeric / sum(count(*)) over () as share"
                    " from marts.customer_segments where snapshot_date = (select max(day) - 1 from today)"
                    " group by trb_tier)"
                    " select t.trb_tier, b.share as share_before, t.share as share_today from today t"
                    " join before b using (trb_tier) where abs(t.share - b.share)"
                    f" > greatest({SEGMENT_SHIFT_ABS}, {SEGMENT_SHIFT_REL} * b.share)"
                ),
                "description": f"no TRB tier's share moved by more than {SEGMENT_SHIFT_ABS:.0%} of customers"
                f" or {SEGMENT_SHIFT_REL:.0%} of its size since the day before",
            },
        ),
    ]
    c360 = [
        Check(
            "mart.churn_probability_range",
            "critical",
            "ExpectColumnValuesToBeBetween",
            {"column": "churn_probability", "min_value": 0, "max_value": 1},
        ),
        Check(
            "mart.customer_360_covers_segments",
            "critical",
            "UnexpectedRowsExpectation",
            {
                "unexpected_rows_query": (
                    "select c.n as customer_360_rows, s.n as segmented_customers from"
                    " (select count(*) as n, max(snapshot_date) as day from {batch}) c,"
                    " lateral (select count(*) as n from marts.customer_segments"
                    " where snapshot_date = c.day) s where c.n <> s.n"
                ),
                "description": "customer_360 has one row per customer segmented that day",
            },
        ),
    ]
    return {"customer_segments": segments, "customer_360": c360, "drift": drift_checks()}


def drift_checks() -> list[Check]:
    """The churn model's inputs and score against its training window (ml.drift, written by
    the day's scoring), one check per PSI band: >= 0.25 (alert) and 0.1-0.25. Both are
    warnings: a drifted model is the model owner's call (retrain, or keep the champion), not a
    reason to withhold the day's marts from BI. A young generated bank shows why: tenure
    moves from weeks to months between training and scoring, PSI far above 0.25 every day,
    and a critical check would publish nothing until the model is retrained. The warning
    reaches the run record, the report and the alert channels."""
    return [
        Check(
            "mart.model_drift" if status == "alert" else "mart.model_drift.warning",
            "warning",
            "UnexpectedRowsExpectation",
            {
                "unexpected_rows_query": (
                    f"select model_version, feature, round(psi::numeric, 3) as psi from {{batch}}"
                    f" where status = '{status}'"
                ),
                "description": f"no model input or score drifted to PSI {bound} against the training window",
            },
        )
        for status, bound in (("alert", ">= 0.25"), ("warning", "0.1-0.25"))
    ]


def recon_checks() -> list[Check]:
    """The reconciliation gate judges the breaks crm.quality.recon wrote for the day."""
    checks = []
    for name, what in (
        ("recon.rows", "every file's control row count = lines in the file = rows loaded + quarantined"),
        ("recon.amounts", "every amount column sums to its control total per currency, to the cent"),
        ("recon.balance_roll_forward", "every account's balance(d-1) + net postings(d) = balance(d)"),
    ):
        for severity, explained in (("critical", "is null"), ("warning", "is not null")):
            checks.append(
                Check(
                    name if severity == "critical" else f"{name}.explained",
                    severity,
                    "UnexpectedRowsExpectation",
                    {
                        "unexpected_rows_query": (
                            "select feed, item, expected, actual, difference, explained_by from {batch}"
                            f" where check_name = '{name}' and explained_by {explained}"
                        ),
                        "description": what
                        + ("" if severity == "critical" else " (breaks a quarantined line explains)"),
                    },
                )
            )
    return checks


def suites(registry: Registry | None = None) -> dict[str, tuple[str, str, list[Check]]]:
    """Suite name -> (schema, table, checks). Names: <gate>.<subject>."""
    registry = registry or load_registry()
    out = {"raw.profile": ("dq", "raw_profiles", raw_checks())}
    out["recon.breaks"] = ("dq", "reconciliation_breaks", recon_checks())
    out |= {
        f"mart.{table}": ("ml" if table == "drift" else "marts", table, checks)
        for table, checks in mart_checks().items()
    }
    return out


def date_column(schema: str) -> str:
    return {"raw": "_business_date", "dq": "business_date", "ml": "business_day"}.get(schema, "snapshot_date")


DAY_SETTING = "crm.gate_day"  # the day a gate validates: set on its connection by the runner
FEEDS_SETTING = "crm.gate_feeds"  # the raw gate's feeds (comma-separated), likewise


def day_query(schema: str, table: str) -> str:
    """The batch of a suite: one day's rows of the table. The day comes from a setting of the
    gate's connection, so PostgreSQL prunes to that day's partition (GX's own daily batch
    filters on extract(year/month/day), which reads every partition: 11.5 s instead of ~1 s
    for the raw gate of a 100,000-customer day, measured by `make bench`). No day, no rows."""
    column = date_column(schema)
    query = f"select * from {schema}.{table} where {column} = current_setting('{DAY_SETTING}', true)::date"
    if table == "raw_profiles":  # the feeds this run profiled (crm dq run --feed F: one)
        query += f" and feed = any(string_to_array(current_setting('{FEEDS_SETTING}', true), ','))"
    return query
