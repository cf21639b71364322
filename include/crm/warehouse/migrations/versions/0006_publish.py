"""Write-audit-publish: BI sees a business day only once its mart gate passed.

dbt builds and tests the marts in place; the mart gate judges them; ``crm.quality.publish``
then records the day in ``dq.published_days``. Every day-grained mart carries a row-level
security policy (dbt post-hook ``bi_sees_published_days``) that shows ``crm_bi_reader`` only
the rows of days up to ``dq.published_through()``, and of monthly marts only the months whose
last day is published. The table's owner (``crm_transformer``: dbt's tests, the gates) sees
everything. Cost: one predicate on the date column the marts are already indexed by.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
create table dq.published_days (
    business_date date primary key,
    published_at timestamptz not null default clock_timestamp(),
    pipeline_run_id text
);
grant select, insert, update on dq.published_days to crm_transformer;
create function dq.published_through() returns date
    language sql stable security definer set search_path = pg_catalog
    as 'select max(business_date) from dq.published_days';
revoke all on function dq.published_through() from public;
grant execute on function dq.published_through() to crm_bi_reader, crm_transformer, crm_ml;
"""
    )


def downgrade() -> None:
    op.execute("drop function dq.published_through(); drop table dq.published_days")
