"""Access audit: who read what in the BI-visible schemas.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

from alembic import op

revision = "0016"
down_revision = "0015"
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
