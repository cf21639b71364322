"""A connection limit per platform role: no role can take the server's connections from another.

The server allows 100 connections (the embedded one; a few are reserved for superusers). Without
limits, BI tools on ``crm_bi_reader`` could hold all of them and lock out the loader and dbt.
Each role gets a share that adds up to less than the whole, leaving the owner room to administer:
loader 20 (parallel feed loads), transformer 20 (dbt threads, gates, publish), ml 10, BI 20.
Roles are per server, not per database: every database's migration sets the same limits.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-01
"""

from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None

LIMITS = {"crm_loader": 20, "crm_transformer": 20, "crm_ml": 10, "crm_bi_reader": 20}


def upgrade() -> None:
    for role, limit in LIMITS.items():
        op.execute(f"alter role {role} connection limit {limit}")


def downgrade() -> None:
    for role in LIMITS:
        op.execute(f"alter role {role} connection limit -1")
