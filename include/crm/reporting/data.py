"""The daily report's data: small frames read from the marts and the quality ledger.

One function per question, each a read-only query for one business day. Only aggregates
and ids of relationship managers leave the warehouse: no customer name, phone, national id
or customer id (the report is shared by e-mail and opened anywhere).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields

import pandas as pd
import psycopg

TIER_ORDER = ["Premier", "Advance", "Personal", "inactive", "former", "new"]
ABC_ORDER = ["high_end", "major", "ordinary", "small", "not segmented"]
CHANNELS = ["branch_visits", "atm_events", "online_sessions", "mobile_events", "calls"]


def frame(conn: psycopg.Connection, sql: str, params: dict | None = None) -> pd.DataFrame:
    cur = conn.execute(sql, params or {})
    return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def segments(conn, day: dt.date) -> pd.DataFrame:
    """Customers and TRB per ABC tier and LV quadrant on the day (marts.customer_segments)."""
    return frame(
        conn,
        """
        select coalesce(abc_tier, 'not segmented') as abc_tier,
               coalesce(lv_quadrant, 'not segmented') as lv_quadrant,
               count(*)::int as customers, coalesce(sum(trb_hkd), 0)::float8 as trb_hkd
        from marts.customer_segments where snapshot_date = %(day)s
        group by 1, 2
        """,
        {"day": day},
    )


def migration_month(conn, day: dt.date) -> pd.DataFrame:
    """TRB tier movement from the end of last month to the day's month (marts.segment_migration)."""
    return frame(
        conn,
        """
        select from_segment, to_segment, customers::int as customers
        from marts.segment_migration
        where dimension = 'trb_tier' and month_start = date_trunc('month', %(day)s::date)::date
        """,
        {"day": day},
    )


def migration_day(conn, day: dt.date) -> tuple[dt.date | None, pd.DataFrame]:
    """TRB tier movement since the previous snapshot of customer_segments, if one is kept."""
    prev = conn.execute(
        "select max(snapshot_date) from marts.customer_segments where snapshot_date < %(day)s",
        {"day": day},
    ).fetchone()[0]
    if prev is None:
        return None, pd.DataFrame(columns=["from_segment", "to_segment", "customers"])
    moves = frame(
        conn,
        """
        select coalesce(p.trb_tier, 'new') as from_segment, t.trb_tier as to_segment,
               count(*)::int as customers
        from marts.customer_segments t
        left join marts.customer_segments p
            on p.customer_id = t.customer_id and p.snapshot_date = %(prev)s
        where t.snapshot_date = %(day)s
        group by 1, 2
        """,
        {"day": day, "prev": prev},
    )
    return prev, moves


def churn_scored(conn, day: dt.date) -> int:
    """Customers the churn model scored for the day (customer_360.churn_probability)."""
    return conn.execute(
        "select count(churn_probability) from marts.customer_360 where snapshot_date = %(day)s", {"day": day}
    ).fetchone()[0]


def churn_by_segment(conn, day: dt.date, scored: bool) -> pd.DataFrame:
    """Churn risk per customer with its LV quadrant: the model's if scored, else the worklist's."""
    if scored:
        sql = """
            select coalesce(s.lv_quadrant, 'not segmented') as lv_quadrant,
                   c.churn_probability::float8 as churn_risk
            from marts.customer_360 c
            join marts.customer_segments s using (snapshot_date, customer_id)
            where c.snapshot_date = %(day)s and c.churn_probability is not null
        """
    else:
        sql = """
            select coalesce(lv_quadrant, 'not segmented') as lv_quadrant, churn_risk::float8 as churn_risk
            from marts.rm_worklist where snapshot_date = %(day)s and churn_risk is not null
        """
    return frame(conn, sql, {"day": day})


def value_at_risk_by_rm(conn, day: dt.date, top: int = 20) -> pd.DataFrame:
    """Per RM (ids only): value at risk in total and of the RM's first customer to call."""
    return frame(
        conn,
        """
        select rm_id, count(*)::int as customers,
               sum(value_at_risk_hkd)::float8 as value_at_risk_hkd,
               max(value_at_risk_hkd)::float8 as top_customer_hkd
        from marts.rm_worklist
        where snapshot_date = %(day)s and rm_id is not null
        group by rm_id
        order by value_at_risk_hkd desc nulls last
        limit %(top)s
        """,
        {"day": day, "top": top},
    )


def channel_months(conn, day: dt.date, months: int = 12) -> pd.DataFrame:
    """Touchpoints per channel and month, the last ``months`` up to the day's (channel_usage)."""
    sums = ", ".join(f"coalesce(sum({c}), 0)::float8 as {c}" for c in CHANNELS)
    return frame(
        conn,
        f"""
        select month_start, {sums}
        from marts.channel_usage
        where month_start <= %(day)s
          and month_start > (date_trunc('month', %(day)s::date) - make_interval(months => %(months)s))::date
        group by month_start order by month_start
        """,
        {"day": day, "months": months},
    )


def service(conn, day: dt.date) -> pd.DataFrame:
    """CE11 per branch for the latest surveyed month up to the day's, with the benchmarks."""
    return frame(
        conn,
        """
        select month_start, branch_id, responses::int as responses,
               mean_satisfaction::float8 as mean_satisfaction, asia_p50_mean::float8 as asia_p50_mean,
               asia_p90_mean::float8 as asia_p90_mean, hsbc_mean::float8 as hsbc_mean, benchmark_position
        from marts.service_quality
        where snapshot_date = (select max(snapshot_date) from marts.service_quality where snapshot_date <= %(day)s)
          and month_start = (
            select max(month_start) from marts.service_quality
            where month_start <= date_trunc('month', %(day)s::date)::date
        )
        order by branch_id
        """,
        {"day": day},
    )


_LATEST_RUNS = """
    select * from dq.validation_runs r
    where r.business_date = %(day)s and r.run_id = (
        select max(l.run_id) from dq.validation_runs l
        where l.gate = r.gate and l.subject = r.subject and l.business_date = r.business_date)
"""


def gates(conn, day: dt.date) -> pd.DataFrame:
    """The latest validation of each gate and subject for the day (as dq.daily_summary)."""
    return frame(
        conn,
        f"select gate, subject, success, critical_failures, warnings from ({_LATEST_RUNS}) r order by 1, 2",
        {"day": day},
    )


def failed_checks(conn, day: dt.date, limit: int = 60) -> pd.DataFrame:
    """Failed expectations of those runs, critical first (no sample values: keys only)."""
    return frame(
        conn,
        f"""
        select r.gate, r.subject, e.check_name, e.severity, e.column_name, e.unexpected_count
        from ({_LATEST_RUNS}) r join dq.expectation_results e using (run_id)
        where not e.success
        order by e.severity = 'critical' desc, r.gate, r.subject, e.check_name
        limit %(limit)s
        """,
        {"day": day, "limit": limit},
    )


def loads(conn, day: dt.date) -> pd.DataFrame:
    """Per feed, the day's last load attempt: rows loaded and quarantined, status (audit.load_log)."""
    return frame(
        conn,
        """
        select distinct on (feed) feed, status, coalesce(rows_loaded, 0)::int as rows_loaded,
               coalesce(rows_quarantined, 0)::int as rows_quarantined
        from audit.load_log
        where business_date = %(day)s and status in ('loaded', 'refused', 'failed')
        order by feed, load_id desc
        """,
        {"day": day},
    )


def recon_breaks(conn, day: dt.date) -> pd.DataFrame:
    """Reconciliation breaks per feed and check, explained (a warning) or not."""
    return frame(
        conn,
        """
        select feed, check_name, (explained_by is not null) as explained, count(*)::int as breaks
        from dq.reconciliation_breaks where business_date = %(day)s
        group by 1, 2, 3 order by 1, 2, 3
        """,
        {"day": day},
    )


@dataclass
class ReportData:
    day: dt.date
    segments: pd.DataFrame
    migration_month: pd.DataFrame
    migration_day: pd.DataFrame
    previous_snapshot: dt.date | None
    churn_scored: int
    churn: pd.DataFrame
    value_at_risk: pd.DataFrame
    channels: pd.DataFrame
    service: pd.DataFrame
    gates: pd.DataFrame
    failed_checks: pd.DataFrame
    loads: pd.DataFrame
    recon_breaks: pd.DataFrame
    recon_ran: bool = field(default=False)

    def frames(self) -> dict[str, pd.DataFrame]:
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if isinstance(getattr(self, f.name), pd.DataFrame)
        }


def collect(conn: psycopg.Connection, day: dt.date) -> ReportData:
    """Everything the page shows for ``day``, in one read-only transaction."""
    conn.read_only = True
    previous, moves = migration_day(conn, day)
    scored = churn_scored(conn, day)
    gate_runs = gates(conn, day)
    data = ReportData(
        day=day,
        segments=segments(conn, day),
        migration_month=migration_month(conn, day),
        migration_day=moves,
        previous_snapshot=previous,
        churn_scored=scored,
        churn=churn_by_segment(conn, day, scored > 0),
        value_at_risk=value_at_risk_by_rm(conn, day),
        channels=channel_months(conn, day),
        service=service(conn, day),
        gates=gate_runs,
        failed_checks=failed_checks(conn, day),
        loads=loads(conn, day),
        recon_breaks=recon_breaks(conn, day),
        recon_ran=bool((gate_runs["gate"] == "recon").any()) if len(gate_runs) else False,
    )
    conn.rollback()
    return data
