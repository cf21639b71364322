"""Retention per layer: what the scheduled retention task deleted, and when.

- ``private.retention_policy`` (one row, owner only): days kept per layer (landing, raw,
  quarantine, logs) and the raw feeds kept whole (CDC feeds: a customer's or account's
  current state is its latest delta, however old). ``crm migrate`` writes it from the
  settings (``CRM_RETAIN_*``, ``crm.warehouse.migrate.sync_retention``); this migration
  inserts the defaults.
- ``audit.retention_runs``: one row per layer and application (business day, days kept,
  cutoff, partitions dropped, rows deleted, files deleted, the pipeline run, who). Retention
  never deletes audit rows (the load ledger stays whole).
- ``audit.apply_retention(business_day, run_id, dry_run)``: ``security definer``, owned by
  the owner, ``search_path`` pinned. The caller names the business day only: the cutoff is
  ``business_day - days`` from the policy; a day after the last loaded day is refused. It drops
  the day partitions of registered feeds (``raw.registered_feed``: partitioned tables of
  ``raw`` owned by the owner) older than the cutoff, deletes older rows of the feeds'
  quarantine tables, records both and returns every layer's cutoff (landing and log files are
  deleted by the caller, which records them through ``audit.record_file_retention``).
- ``crm_loader`` (the retention task's role) may execute the two functions; it reads the runs.
  ``crm_transformer`` reads them for the run record: ``audit.pipeline_runs.retention``.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UPGRADE = r"""
create table private.retention_policy (
    singleton boolean primary key default true check (singleton),
    landing_days integer not null default 90 check (landing_days > 0),
    raw_days integer not null default 2557 check (raw_days > 0),
    quarantine_days integer not null default 90 check (quarantine_days > 0),
    log_days integer not null default 30 check (log_days > 0),
    raw_keep_feeds text[] not null default array['core_customers', 'core_accounts'],
    set_at timestamptz not null default clock_timestamp()
);
revoke all on private.retention_policy from public;
insert into private.retention_policy default values;

create table audit.retention_runs (
    retention_run_id bigint generated always as identity primary key,
    business_date date not null,
    layer text not null check (layer in ('landing', 'raw', 'quarantine', 'logs')),
    retain_days integer not null,
    cutoff date not null,                 -- everything of a day before it is deleted
    partitions_dropped integer not null default 0,
    rows_deleted bigint not null default 0,
    files_deleted integer not null default 0,
    run_id text,                          -- the pipeline run (crm_transform's run id), or null
    applied_by text not null default session_user,
    applied_at timestamptz not null default clock_timestamp()
);
create index on audit.retention_runs (run_id);
create index on audit.retention_runs (business_date);
revoke all on audit.retention_runs from public;
grant select on audit.retention_runs to crm_loader, crm_transformer;

alter table audit.pipeline_runs add column retention jsonb not null default '{}'::jsonb;

-- The policy's cutoff per layer for a business day (the caller never chooses one).
create or replace function audit.retention_cutoffs(business_day date)
returns table (layer text, retain_days integer, cutoff date)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare p private.retention_policy;
begin
  select * into p from private.retention_policy where singleton;
  if p is null then
    raise exception 'no retention policy: run crm migrate' using errcode = '55000';
  end if;
  if business_day is null then
    raise exception 'a business day is required' using errcode = '22004';
  end if;
  if business_day > (select max(l.business_date) from audit.load_log l where l.status = 'loaded') then
    raise exception 'business day % is after the last loaded day', business_day using errcode = '22023';
  end if;
  return query values ('landing', p.landing_days, business_day - p.landing_days),
                      ('raw', p.raw_days, business_day - p.raw_days),
                      ('quarantine', p.quarantine_days, business_day - p.quarantine_days),
                      ('logs', p.log_days, business_day - p.log_days);
end $$;

create or replace function audit.apply_retention(business_day date, run_id text default null,
                                                 dry_run boolean default false)
returns table (layer text, retain_days integer, cutoff date, partitions_dropped integer,
               rows_deleted bigint)
language plpgsql security definer set search_path = pg_catalog, pg_temp set lock_timeout = '60s' as $$
declare
  keep text[] := (select p.raw_keep_feeds from private.retention_policy p where p.singleton);
  raw_days integer;
  raw_cut date;
  q_days integer;
  q_cut date;
  feed record;
  part record;
  n bigint;
  parts integer := 0;
  raw_rows bigint := 0;
  q_rows bigint := 0;
begin
  select c.retain_days, c.cutoff into raw_days, raw_cut from audit.retention_cutoffs(business_day) c
  where c.layer = 'raw';
  select c.retain_days, c.cutoff into q_days, q_cut from audit.retention_cutoffs(business_day) c
  where c.layer = 'quarantine';
  for feed in
    select c.relname::text as name from pg_class c
    where c.relnamespace = 'raw'::regnamespace and c.relkind = 'p'
      and c.relowner = current_user::text::regrole and c.relname !~ '^_'
    order by c.relname
  loop
    perform raw.registered_feed(feed.name);
    if not feed.name = any(keep) then
      -- The feed's day partitions (raw.<feed>_pYYYYMMDD, bounds of that one day) before the cutoff.
      for part in
        select k.relname::text as name from pg_inherits h join pg_class k on k.oid = h.inhrelid
        where h.inhparent = format('raw.%I', feed.name)::regclass
          and k.relname ~ ('^' || feed.name || '_p[0-9]{8}$')
          and k.relowner = current_user::text::regrole
          and to_date(right(k.relname, 8), 'YYYYMMDD') < raw_cut
          and pg_get_expr(k.relpartbound, k.oid) = format('FOR VALUES FROM (%L) TO (%L)',
                to_date(right(k.relname, 8), 'YYYYMMDD'), to_date(right(k.relname, 8), 'YYYYMMDD') + 1)
        order by k.relname
      loop
        execute format('select count(*) from raw.%I', part.name) into n;
        if not dry_run then
          execute format('drop table raw.%I', part.name);
        end if;
        parts := parts + 1;
        raw_rows := raw_rows + n;
      end loop;
    end if;
    -- quarantine.<feed>, if the owner's.
    if exists (select 1 from pg_class c where c.relnamespace = 'quarantine'::regnamespace
               and c.relname = feed.name and c.relkind = 'r'
               and c.relowner = current_user::text::regrole) then
      if dry_run then
        execute format('select count(*) from quarantine.%I where _business_date < %L', feed.name, q_cut) into n;
      else
        execute format('delete from quarantine.%I where _business_date < %L', feed.name, q_cut);
        get diagnostics n = row_count;
      end if;
      q_rows := q_rows + n;
    end if;
  end loop;
  if not dry_run then
    insert into audit.retention_runs (business_date, layer, retain_days, cutoff, partitions_dropped,
                                      rows_deleted, run_id)
    values (business_day, 'raw', raw_days, raw_cut, parts, raw_rows, apply_retention.run_id),
           (business_day, 'quarantine', q_days, q_cut, 0, q_rows, apply_retention.run_id);
  end if;
  return query
    select c.layer, c.retain_days, c.cutoff,
           case c.layer when 'raw' then parts else 0 end,
           case c.layer when 'raw' then raw_rows when 'quarantine' then q_rows else 0 end
    from audit.retention_cutoffs(business_day) c;
end $$;

-- The caller's count of landing or log files it deleted for the day (the cutoff: the policy's).
create or replace function audit.record_file_retention(business_day date, layer text, files integer,
                                                       run_id text default null) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare c record;
begin
  if layer not in ('landing', 'logs') or files is null or files < 0 then
    raise exception 'not a file layer or count: %', layer using errcode = '22023';
  end if;
  select * into c from audit.retention_cutoffs(business_day) r where r.layer = record_file_retention.layer;
  insert into audit.retention_runs (business_date, layer, retain_days, cutoff, files_deleted, run_id)
  values (business_day, layer, c.retain_days, c.cutoff, files, record_file_retention.run_id);
end $$;

revoke all on function audit.retention_cutoffs(date) from public;
revoke all on function audit.apply_retention(date, text, boolean) from public;
revoke all on function audit.record_file_retention(date, text, integer, text) from public;
grant execute on function audit.retention_cutoffs(date), audit.apply_retention(date, text, boolean),
  audit.record_file_retention(date, text, integer, text) to crm_loader;
"""

DOWNGRADE = r"""
drop function if exists audit.record_file_retention(date, text, integer, text);
drop function if exists audit.apply_retention(date, text, boolean);
drop function if exists audit.retention_cutoffs(date);
alter table audit.pipeline_runs drop column if exists retention;
drop table if exists audit.retention_runs;
drop table if exists private.retention_policy;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
