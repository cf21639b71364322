"""The raw gate's day profile: one row per figure of a feed's business day.

The raw gate measures each feed's day in one SQL pass (volume, distinct keys, non-null
shares, scales, freshness, a content fingerprint; ``crm.quality.profile``), writes the
figures here with the band each is judged against, and Great Expectations judges this
table (suite ``raw.profile``). ``passed`` is defined once, here, for both the per-figure
results in ``dq.expectation_results`` and the GX expectations. Figures only: no row of a
feed, no personal value. ``crm_loader`` (the raw gate's role) replaces a day's figures when
the gate runs again.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
create table dq.raw_profiles (
    business_date date not null,
    feed text not null,
    check_name text not null,            -- raw.volume, raw.scale:amount, raw.stale_repeat, ...
    kind text not null,                  -- what the figure is: row_count, scale, non_null_share, ...
    column_name text,
    severity text not null check (severity in ('critical', 'warning')),
    observed double precision,           -- null: nothing to judge (an empty or thin day)
    min_value double precision,
    max_value double precision,
    judged boolean not null,             -- false: warm-up, a thin day, nothing observed
    passed boolean generated always as
        (not judged or coalesce(observed between min_value and max_value, false)) stored,
    band jsonb,                          -- how the bounds were found (history days, median, warm-up)
    fingerprint text,                    -- raw.stale_repeat: the day's content, order-free
    profiled_at timestamptz not null default clock_timestamp(),
    primary key (business_date, feed, check_name)
);
grant select, insert, delete on dq.raw_profiles to crm_loader;
"""
    )


def downgrade() -> None:
    op.execute("drop table dq.raw_profiles")
