"""Bootstrap: schemas, platform roles and their privileges, load audit tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMAS = ("raw", "quarantine", "audit", "staging", "intermediate", "snapshots", "marts", "ml", "dq")

UPGRADE = """
-- Roles are cluster-wide: create them once, keep them on re-runs and in other databases.
do $$
declare r text;
begin
  foreach r in array array['crm_loader', 'crm_transformer', 'crm_ml', 'crm_bi_reader'] loop
    if not exists (select 1 from pg_roles where rolname = r) then
      execute format('create role %I nologin', r);
    end if;
    -- The owner must be a member to set default privileges on the role's behalf.
    execute format('grant %I to current_user', r);
  end loop;
end $$;

create schema if not exists raw;
create schema if not exists quarantine;
create schema if not exists audit;
create schema if not exists staging;
create schema if not exists intermediate;
create schema if not exists snapshots;
create schema if not exists marts;
create schema if not exists ml;
create schema if not exists dq;

revoke all on schema public from public;
do $$ begin execute format('revoke all on database %I from public', current_database()); end $$;
do $$ begin
  execute format('grant connect on database %I to crm_loader, crm_transformer, crm_ml, crm_bi_reader',
                 current_database());
end $$;

-- crm_loader: lands files into raw, quarantine and the load audit.
grant usage, create on schema raw, quarantine, audit to crm_loader;

-- crm_transformer (dbt): reads raw, audit and ml; builds staging .. marts, dq.
grant usage on schema raw, audit, ml to crm_transformer;
grant usage, create on schema staging, intermediate, snapshots, marts, dq to crm_transformer;
alter default privileges for role crm_loader in schema raw grant select on tables to crm_transformer;
alter default privileges for role crm_loader in schema audit grant select, update on tables to crm_transformer;
alter default privileges for role crm_ml in schema ml grant select on tables to crm_transformer;

-- crm_ml: reads the marts (features), writes scores and model registry rows to ml.
grant usage on schema marts to crm_ml;
grant usage, create on schema ml to crm_ml;
alter default privileges for role crm_transformer in schema marts grant select on tables to crm_ml;

-- crm_bi_reader: the marts and nothing else (no raw, quarantine or clear-text PII).
grant usage on schema marts to crm_bi_reader;
alter default privileges for role crm_transformer in schema marts grant select on tables to crm_bi_reader;
alter default privileges in schema marts grant select on tables to crm_bi_reader;

-- One row per file load attempt: the ledger that proves nothing was lost.
create table audit.load_log (
    load_id           bigint generated always as identity primary key,
    feed              text        not null,
    business_date     date        not null,
    file_path         text        not null,
    file_sha256       text,
    rows_in_file      bigint,
    rows_loaded       bigint,
    rows_quarantined  bigint,
    status            text        not null
        check (status in ('running', 'loaded', 'refused', 'failed', 'skipped_duplicate', 'superseded')),
    rule              text,
    error             text,
    warnings          jsonb       not null default '[]'::jsonb,
    run_id            text,
    started_at        timestamptz not null default now(),
    finished_at       timestamptz,
    constraint load_log_balances check (
        status <> 'loaded' or rows_in_file = rows_loaded + rows_quarantined
    )
);
create index load_log_feed_day on audit.load_log (feed, business_date);

-- Days whose downstream models must be rebuilt because a partition arrived late
-- or was re-delivered with different content after later days were processed.
create table audit.reprocess_requests (
    request_id     bigint generated always as identity primary key,
    feed           text        not null,
    business_date  date        not null,
    reason         text        not null,
    load_id        bigint references audit.load_log (load_id),
    requested_at   timestamptz not null default now(),
    processed_at   timestamptz
);

grant select, insert, update on audit.load_log, audit.reprocess_requests to crm_loader;
grant select on audit.load_log to crm_transformer;
grant select, update on audit.reprocess_requests to crm_transformer;

-- Does a text parse as a type? PostgreSQL 16 has pg_input_is_valid; 14 and 15
-- fall back to an exception block (slower, same answer).
do $$
begin
  if current_setting('server_version_num')::int >= 160000 then
    create or replace function audit.is_valid_input(value text, type_name text)
      returns boolean language sql immutable parallel safe
      as 'select pg_input_is_valid(value, type_name)';
  else
    create or replace function audit.is_valid_input(value text, type_name text)
      returns boolean language plpgsql immutable parallel safe as $f$
      begin
        execute format('select %L::%s', value, type_name);
        return true;
      exception when others then
        return false;
      end $f$;
  end if;
end $$;
grant execute on function audit.is_valid_input(text, text) to crm_loader, crm_transformer;
"""

DOWNGRADE = """
drop function if exists audit.is_valid_input(text, text);
drop table if exists audit.reprocess_requests;
drop table if exists audit.load_log;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
