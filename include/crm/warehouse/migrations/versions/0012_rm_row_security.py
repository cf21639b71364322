"""Relationship-manager row-level security: RMs see the names and contacts of their own customers only.

``crm_rm`` is the group role of every RM login (created per RM by ``crm rm grant``). It gets the
least it needs: connect, usage on the new schema ``rm`` (clear contacts, which BI never reads)
and on ``marts`` (only to name ``marts.rm_worklist``; its tables are granted one by one by the
dbt post-hook ``rm_sees_own_customers``, which also writes the row policies, so they survive
every build and full refresh). It owns nothing, creates nothing and never logs in itself
(connection limit 0; each RM login has its own small limit).

Which RM a login is lives in ``security.rm_logins``, which only the owner writes.
``security.current_rm_id()`` reads it for ``session_user`` (the authenticated login, not a role
it ``set role``-d to; only a superuser can change it), as a security definer with its
search_path pinned, so a reader's own objects cannot shadow what it calls.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UPGRADE = """
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'crm_rm') then
    create role crm_rm nologin;
  end if;
end $$;
alter role crm_rm nologin connection limit 0;
do $$ begin execute format('grant connect on database %I to crm_rm', current_database()); end $$;

create schema if not exists rm;
revoke all on schema rm from public;
grant usage, create on schema rm to crm_transformer;
grant usage on schema rm to crm_rm;
grant usage on schema marts to crm_rm;

create schema if not exists security;
revoke all on schema security from public;

create table security.rm_logins (
    role_name   name        primary key,
    rm_id       text        not null,
    granted_at  timestamptz not null default now()
);
comment on table security.rm_logins is
    'Which relationship manager each RM login is (crm rm grant). Written by the owner only.';

create function security.current_rm_id() returns text
    language sql stable security definer
    set search_path = pg_catalog, pg_temp
as $f$
    select logins.rm_id
    from security.rm_logins as logins
    where logins.role_name = session_user
      and pg_has_role(session_user, 'crm_rm', 'member')
$f$;
revoke all on function security.current_rm_id() from public;
grant execute on function security.current_rm_id() to crm_rm, crm_transformer;
-- dbt names the function in its policies (lookup needs usage; the table stays unreadable).
grant usage on schema security to crm_transformer;
-- An RM sees of its worklist what BI sees (the published state): the policy calls this.
grant execute on function dq.published_through() to crm_rm;
"""

DOWNGRADE = """
revoke execute on function dq.published_through() from crm_rm;
drop schema if exists rm cascade;
drop schema if exists security cascade;
revoke usage on schema marts from crm_rm;
do $$ begin execute format('revoke connect on database %I from crm_rm', current_database()); end $$;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
