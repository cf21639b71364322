"""Quality-gate results: one row per validation, one per expectation, breaks row by row.

The gates (``crm.quality``) write here as the role of their stage: the raw gate and the
reconciliation as ``crm_loader`` (after ingestion), the mart gate as ``crm_transformer``
(after dbt). Each may insert and read, never update or delete: results are a ledger.
``crm_bi_reader`` reads only the summary view ``dq.daily_summary``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
create table dq.validation_runs (
    run_id bigint generated always as identity primary key,
    gate text not null check (gate in ('raw', 'recon', 'mart')),
    subject text not null,              -- the feed or the group of marts validated
    business_date date not null,
    suite text not null,
    success boolean not null,           -- no critical expectation failed
    critical_failures integer not null,
    warnings integer not null,
    pipeline_run_id text,               -- Airflow's run id, or the CLI's
    started_at timestamptz not null,
    finished_at timestamptz not null default clock_timestamp()
);
create index on dq.validation_runs (gate, subject, business_date);
create table dq.expectation_results (
    run_id bigint not null references dq.validation_runs on delete cascade,
    check_name text not null,           -- the suite's meta.check: raw.volume, mart.abc_shares, ...
    expectation_type text not null,
    column_name text,
    severity text not null check (severity in ('critical', 'warning')),
    success boolean not null,
    observed_value jsonb,
    expected jsonb,                     -- the bounds it was judged against
    unexpected_count bigint,
    unexpected_sample jsonb,            -- a few keys or values, never a personal field
    primary key (run_id, check_name)
);
create table dq.reconciliation_breaks (
    business_date date not null,
    feed text not null,
    check_name text not null,           -- recon.rows, recon.amounts, recon.balance_roll_forward
    item text not null,                 -- account id, currency or file
    expected numeric,
    actual numeric,
    difference numeric,
    explained_by text,                  -- e.g. a quarantined line of the account: a warning
    found_at timestamptz not null default clock_timestamp()
);
create index on dq.reconciliation_breaks (business_date, feed);
create view dq.daily_summary as
select r.business_date, r.gate, r.subject, r.success, r.critical_failures, r.warnings, r.finished_at
from dq.validation_runs r
where r.run_id = (
    select max(l.run_id) from dq.validation_runs l
    where l.gate = r.gate and l.subject = r.subject and l.business_date = r.business_date
);
grant usage on schema dq to crm_loader, crm_transformer, crm_bi_reader;
grant select, insert on dq.validation_runs, dq.expectation_results, dq.reconciliation_breaks
    to crm_loader, crm_transformer;
grant delete on dq.reconciliation_breaks to crm_loader;  -- a re-run replaces the day's breaks
grant select on dq.daily_summary to crm_bi_reader;
"""
    )


def downgrade() -> None:
    op.execute(
        "drop view dq.daily_summary; drop table dq.reconciliation_breaks, dq.expectation_results,"
        " dq.validation_runs"
    )
