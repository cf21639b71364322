"""A run record per pipeline run: what a business day cost and what came of it.

One row per run of ``crm_transform`` (its Airflow run id) or of ``crm run`` for a day whose
transformation never started (ingest or its gates failed). ``crm.pipeline_run.record_run``
computes it from what the warehouse already holds (``audit.load_log``, ``dq.validation_runs``,
``dq.published_days``) plus the seconds per stage its caller measured, and upserts it:
re-recording a run replaces its row. ``crm_transformer`` writes it (the last task of
``crm_transform``); ``crm_loader`` may read it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
create table audit.pipeline_runs (
    run_id text primary key,            -- Airflow's run id of crm_transform, or crm run's
    business_date date not null,
    started_at timestamptz,
    finished_at timestamptz,
    stage_seconds jsonb not null default '{}'::jsonb,  -- ingest, gate_raw, gate_recon, dbt, gate_mart, publish, report
    rows jsonb not null default '{}'::jsonb,           -- {"per_feed": {feed: rows loaded}, "total": n}
    rows_quarantined bigint not null default 0,
    files_refused integer not null default 0,
    gates jsonb not null default '{}'::jsonb,          -- {gate: {suites, passed, critical, warnings, failed}}
    model_version text,                                -- the churn model's version; null until ML runs
    published boolean not null default false,
    recorded_at timestamptz not null default clock_timestamp()
);
create index on audit.pipeline_runs (business_date);
grant select, insert, update on audit.pipeline_runs to crm_transformer;
grant select on audit.pipeline_runs to crm_loader;
"""
    )


def downgrade() -> None:
    op.execute("drop table audit.pipeline_runs")
