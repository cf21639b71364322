"""Churn reason codes with each score, and the daily drift of the model's inputs (ml).

``ml.churn_scores`` gains ``reason_1..3`` (what a relationship manager reads: the three
features that push the customer's score up, worded) and ``reason_features`` (their source
columns, same order, for audits and analysis). Rows scored before this migration keep nulls.

``ml.model_versions.drift_reference``: the training sample's bins and shares per feature
and for the score, written at registration (``crm.ml.drift.store_reference``); scoring
compares each day with it without the training data.

``ml.drift``: one row per model version, business day and feature (and the score), with its
population stability index and status (ok < 0.1 <= warning < 0.25 <= alert). Scoring
replaces a day's rows, so re-scoring never duplicates them (the primary key guards it).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UPGRADE = """
alter table ml.churn_scores
    add column reason_1 text,
    add column reason_2 text,
    add column reason_3 text,
    add column reason_features text[] check (cardinality(reason_features) <= 3);
alter table ml.model_versions add column drift_reference jsonb;
create table ml.drift (
    model_name     text             not null,
    model_version  text             not null,
    business_day   date             not null,
    feature        text             not null,  -- a feature column, or churn_probability (the score)
    kind           text             not null check (kind in ('feature', 'score')),
    psi            double precision not null check (psi >= 0),
    status         text             not null check (status in ('ok', 'warning', 'alert')),
    rows           bigint           not null,  -- customers scored that day
    computed_at    timestamptz      not null default clock_timestamp(),
    primary key (model_name, model_version, business_day, feature),
    check ((status = 'ok') = (psi < 0.1) and (status = 'alert') = (psi >= 0.25))
);
grant select, insert, delete on ml.drift to crm_ml;
grant select on ml.drift to crm_transformer;
"""

DOWNGRADE = """
drop table if exists ml.drift;
alter table ml.model_versions drop column if exists drift_reference;
alter table ml.churn_scores
    drop column if exists reason_features,
    drop column if exists reason_3,
    drop column if exists reason_2,
    drop column if exists reason_1;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
