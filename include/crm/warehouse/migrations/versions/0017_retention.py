"""Retention per layer: what the scheduled retention task deleted, and when.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UPGRADE = """
select 1;
"""

DOWNGRADE = """
select 1;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
