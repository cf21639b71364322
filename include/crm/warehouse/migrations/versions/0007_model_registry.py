"""Model registry: one row per trained model version, its artifact's hash and its status.

``crm.ml.registry`` writes here as ``crm_ml`` (the stage that owns the ml schema): it inserts
a version as challenger and promotes it to champion only when it beats the champion on the
same out-of-time test set; the champion it replaces is retired. Rows are never deleted: the
registry is the audit trail of which model scored which day. At most one champion per model
name (a partial unique index). ``crm_transformer`` reads it (dbt may expose the champion).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
create table ml.model_versions (
    name text not null,                 -- the model: churn, ...
    version text not null,              -- UTC timestamp of training, sortable: 20261130T054412Z
    trained_at timestamptz not null,
    training_window jsonb not null,     -- split kind, first/last train and test period, row counts
    features jsonb not null,            -- numeric / categorical columns, excluded ones with the reason
    parameters jsonb not null,          -- chosen hyper-parameters, calibration, baseline
    metrics jsonb not null,             -- out-of-time test metrics of the model and of the baseline
    artifact_path text not null,        -- $CRM_HOME/models/<name>/<version>.skops
    artifact_sha256 text not null check (artifact_sha256 ~ '^[0-9a-f]{64}$'),
    status text not null default 'challenger' check (status in ('champion', 'challenger', 'retired')),
    status_reason text,                 -- why it is (or is not) the champion
    status_changed_at timestamptz not null default clock_timestamp(),
    primary key (name, version)
);
create unique index model_versions_one_champion on ml.model_versions (name) where status = 'champion';
grant select, insert, update on ml.model_versions to crm_ml;
grant select on ml.model_versions to crm_transformer;
"""
    )


def downgrade() -> None:
    op.execute("drop table ml.model_versions")
