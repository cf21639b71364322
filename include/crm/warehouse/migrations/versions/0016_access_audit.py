"""Access audit: who read what in the BI-visible schemas.

The reading roles (``crm_bi_reader`` and every RM login, member of ``crm_rm``) get
``log_statement = 'all'`` in this database (``alter role ... in database``: a downgrade of
another database on the same server leaves this one audited); no other role is logged. The
parameter is superuser-only: ``crm_admin`` grants ``set`` on it to the owner (PostgreSQL 15+,
``crm.warehouse.server.ensure_owner_role``). Without that grant (an external server whose DBA
has not granted it) the roles stay unlogged and a warning says so; ``crm privacy access-log``
names the unaudited roles too.

``crm privacy access-log`` imports the server's CSV log lines of those statements into
``audit.bi_access`` (one row per session line: ``(session_id, session_line)`` is the key, so
an import repeated adds nothing) and remembers how far it read each file in
``audit.bi_access_files``. Both are the owner's alone: statements carry the literals an analyst
typed.

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
create table audit.bi_access (
    session_id    text        not null,
    session_line  bigint      not null,
    logged_at     timestamptz not null,
    role_name     name        not null,
    database_name name        not null,
    client        text,
    application   text,
    command_tag   text        not null,
    relations     text[]      not null default '{}',
    statement     text        not null,
    parameters    text,
    log_file      text        not null,
    imported_at   timestamptz not null default now(),
    primary key (session_id, session_line)
);
create index bi_access_logged_at on audit.bi_access (logged_at);
create index bi_access_role on audit.bi_access (role_name, logged_at);
comment on table audit.bi_access is
    'Statements of the reading roles (BI, RM logins) from the server log: crm privacy access-log. Owner only.';

create table audit.bi_access_files (
    log_file    text        primary key,
    bytes_read  bigint      not null,
    lines_read  bigint      not null,
    imported_at timestamptz not null default now()
);
comment on table audit.bi_access_files is
    'How far crm privacy access-log has read each CSV log file. Owner only.';

revoke all on audit.bi_access, audit.bi_access_files
    from public, crm_loader, crm_transformer, crm_ml, crm_bi_reader, crm_rm;

do $$
declare reader record;
begin
  if not has_parameter_privilege(current_user, 'log_statement', 'set') then
    raise warning 'access audit: % may not set log_statement (a superuser grants it: grant set on'
      ' parameter log_statement to %); the reading roles are not logged', current_user, current_user;
    return;
  end if;
  for reader in
    -- RM logins: direct members of crm_rm (crm rm grant), never a crm_* or pg_* role (the
    -- owner is crm_rm's admin) nor a superuser (pg_has_role is true for those).
    select r.rolname from pg_roles r
    where r.rolname = 'crm_bi_reader'
       or (r.rolcanlogin and not r.rolsuper and r.rolname !~ '^(crm|pg)_'
           and exists (select from pg_auth_members m
                       where m.roleid = 'crm_rm'::regrole and m.member = r.oid))
  loop
    execute format('alter role %I in database %I set log_statement = %L', reader.rolname, current_database(), 'all');
  end loop;
end $$;
"""

DOWNGRADE = """
do $$
declare r record;
begin
  for r in
    select s.setrole::regrole::text as rolname from pg_db_role_setting s
    join pg_database d on d.oid = s.setdatabase
    where d.datname = current_database() and s.setrole <> 0
      and exists (select 1 from unnest(s.setconfig) c where c like 'log_statement=%')
  loop
    execute format('alter role %s in database %I reset log_statement', r.rolname, current_database());
  end loop;
end $$;
drop table audit.bi_access_files;
drop table audit.bi_access;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
