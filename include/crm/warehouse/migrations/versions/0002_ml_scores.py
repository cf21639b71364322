"""ML score tables: where the churn and CLV models write, and dbt reads as a source.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = """
create table if not exists ml.churn_scores (
    customer_id        text        not null,
    as_of_date         date        not null,
    churn_probability  numeric     not null check (churn_probability between 0 and 1),
    model_version      text        not null,
    scored_at          timestamptz not null default now(),
    primary key (customer_id, as_of_date, model_version)
);
create table if not exists ml.clv_scores (
    customer_id    text        not null,
    as_of_date     date        not null,
    clv_hkd        numeric     not null,
    model_version  text        not null,
    scored_at      timestamptz not null default now(),
    primary key (customer_id, as_of_date, model_version)
);
grant select, insert, update, delete on ml.churn_scores, ml.clv_scores to crm_ml;
grant select on ml.churn_scores, ml.clv_scores to crm_transformer;
"""

DOWNGRADE = """
drop table if exists ml.clv_scores;
drop table if exists ml.churn_scores;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
