"""Let the stage roles create temporary tables (the loader stages each file in one).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "do $$ begin execute format('grant temporary on database %I to crm_loader, crm_transformer, crm_ml',"
        " current_database()); end $$"
    )


def downgrade() -> None:
    op.execute(
        "do $$ begin execute format('revoke temporary on database %I from crm_loader, crm_transformer, crm_ml',"
        " current_database()); end $$"
    )
