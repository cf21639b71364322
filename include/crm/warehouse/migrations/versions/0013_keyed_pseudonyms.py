"""Reserved (no change yet): Keyed pseudonyms (HMAC) the transformer cannot reverse.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
