"""The raw gate's roll-forward totals: each balance-moving feed's day in two exact sums.

The balance roll-forward (``crm.quality.recon``) holds for a day when, summed over every
account, balance(d-1) + net postings(d) - balance(d) is 0, both plainly and weighted by a
hash of the account. Those sums are linear: each is one feed's day summed on its own. The
raw gate's profile pass already reads every row of ``core_balances`` and
``core_transactions``, so it adds the two sums there and keeps them here with the load they
were measured on; the reconciliation then checks the day from three rows of this table
instead of reading both feeds again, and reads raw only when a load changed since. Sums
only: no row of a feed, no personal value. ``crm_loader`` (the raw gate's role) replaces a
day's totals when the gate runs again.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
create table dq.day_totals (
    business_date date not null,
    feed text not null,
    load_id bigint not null,      -- the load whose rows were summed (raw._load_id)
    total numeric not null,       -- the day's signed balance movement, summed over its rows
    weighted numeric not null,    -- the same, each row weighted by a hash of its account
    measured_at timestamptz not null default clock_timestamp(),
    primary key (business_date, feed)
);
grant select, insert, delete on dq.day_totals to crm_loader;
"""
    )


def downgrade() -> None:
    op.execute("drop table dq.day_totals")
