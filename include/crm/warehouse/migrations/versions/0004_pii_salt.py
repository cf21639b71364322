"""The PII salt lives in the warehouse, readable by crm_transformer only.

dim_customer hashes national ids with it through ``private.pii_salt()``, so the salt is in
no SQL text: not in dbt's compiled SQL, logs or partial-parse file, not in Airflow's
rendered fields, not in PostgreSQL's statement logs. ``crm migrate`` writes it from the
settings (CRM_PII_SALT, or the local secrets file), like the role passwords.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
create schema if not exists private;
revoke all on schema private from public;
create table private.pii_salt (
    singleton boolean primary key default true check (singleton),
    salt text not null check (char_length(salt) >= 16),
    set_at timestamptz not null default clock_timestamp()
);
create function private.pii_salt() returns text language plpgsql stable as $$
declare
    value text;
begin
    select salt into value from private.pii_salt;
    if value is null then
        raise exception 'private.pii_salt is empty: set CRM_PII_SALT and run crm migrate';
    end if;
    return value;
end $$;
revoke all on function private.pii_salt() from public;
grant usage on schema private to crm_transformer;
grant select on private.pii_salt to crm_transformer;
grant execute on function private.pii_salt() to crm_transformer;
"""
    )


def downgrade() -> None:
    op.execute("drop schema private cascade")
