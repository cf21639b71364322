"""Least privilege for the loader: it owns nothing the transformer reads.

Before, ``crm_loader`` owned the raw and quarantine tables (it created them) and could
create objects in ``raw``, ``quarantine`` and ``audit``: it could replace a raw table by a
view calling its own function, which the next ``dbt build`` ran as ``crm_transformer``,
drop the transformer's views with CASCADE, and rewrite the load ledger.

Now the owner owns every raw table, partition, quarantine table and the ledger; the loader:

- writes through table privileges: select on raw, insert and truncate on a day's partition,
  select/insert/delete on quarantine, insert and (some columns of) update on
  ``audit.load_log`` for attempts still open (row security), never delete or truncate;
- creates nothing in a schema another role reads. Its work tables (a file's stage, the
  clean path's new partition) live in ``load_work``, a schema only it and the owner use;
- changes raw only through owner-defined ``security definer`` functions in ``raw`` with a
  pinned search_path, which accept only a registered feed (a partitioned table of ``raw``
  owned by the owner) and quote every name with ``format('%I')``:
  ``raw.ensure_partition`` (create a day's partition), ``raw.adopt_partition`` (the clean
  path's work table, checked to be plain data (no trigger, rule, index, default, policy,
  statistics, grant, constraint but the day's), becomes the day's partition, owned by the
  owner), ``raw.analyze_partition`` and ``raw.add_feed_columns`` (a type name that parses
  as a type, nothing else).

Existing warehouses: ownership of the loader's tables moves to the owner and the grants
are re-issued.
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

UPGRADE = r"""
create schema if not exists load_work;
revoke all on schema load_work from public;
grant usage, create on schema load_work to crm_loader;

revoke create on schema raw, quarantine, audit from crm_loader;

-- Tables the loader created: the owner's from now on (their indexes follow).
do $$
declare t record;
begin
  for t in
    select c.oid::regclass as rel, n.nspname, c.relname from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('raw', 'quarantine', 'audit') and c.relkind in ('r', 'p')
      and c.relowner = 'crm_loader'::regrole
  loop
    if t.nspname = 'raw' and (t.relname like '\_load\_%' or t.relname like '\_stage\_%') then
      execute format('drop table %s', t.rel);  -- a crashed load's work table
    else
      execute format('alter table %s owner to %I', t.rel, current_user);
    end if;
  end loop;
end $$;

alter default privileges for role crm_loader in schema raw revoke select on tables from crm_transformer;
alter default privileges for role crm_loader in schema audit revoke select, update on tables from crm_transformer;
alter default privileges in schema raw grant select on tables to crm_transformer, crm_loader;
alter default privileges in schema quarantine grant select, insert, delete on tables to crm_loader;

-- Re-grant what the loader's code needs, and nothing more.
do $$
declare t record;
begin
  for t in
    select c.oid::regclass as rel, n.nspname, c.relispartition from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('raw', 'quarantine') and c.relkind in ('r', 'p')
  loop
    execute format('revoke all on %s from crm_loader', t.rel);
    if t.nspname = 'raw' then
      execute format('grant select on %s to crm_transformer, crm_loader', t.rel);
      if t.relispartition then
        execute format('grant insert, truncate on %s to crm_loader', t.rel);
      end if;
    else
      execute format('grant select, insert, delete on %s to crm_loader', t.rel);
    end if;
  end loop;
end $$;

-- The ledger: insert attempts, close the open ones; history stays as it is.
revoke all on audit.load_log, audit.reprocess_requests from crm_loader;
grant select, insert on audit.load_log to crm_loader;
grant update (status, rows_in_file, rows_loaded, rows_quarantined, warnings, finished_at)
  on audit.load_log to crm_loader;
grant select, insert on audit.reprocess_requests to crm_loader;
alter table audit.load_log enable row level security;
create policy load_log_read on audit.load_log for select using (true);
create policy load_log_loader_inserts on audit.load_log for insert to crm_loader
  with check (status in ('running', 'refused', 'failed'));
-- An open attempt ('running') is closed; the day's loaded attempt is superseded by the next.
create policy load_log_loader_closes on audit.load_log for update to crm_loader
  using (status in ('running', 'loaded')) with check (status in ('loaded', 'superseded'));

-- raw.<feed>, if it is a registered feed: a partitioned table of raw owned by the owner.
create or replace function raw.registered_feed(feed text) returns regclass
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare rel regclass;
begin
  select c.oid into rel from pg_class c
  where c.relnamespace = 'raw'::regnamespace and c.relname = feed and c.relkind = 'p'
    and c.relowner = current_user::text::regrole and feed !~ '^_';
  if rel is null then
    raise exception 'raw.% is not a registered feed', quote_ident(feed) using errcode = '42501';
  end if;
  return rel;
end $$;

create or replace function raw.partition_name(feed text, day date) returns text
language sql stable set search_path = pg_catalog, pg_temp
as $$ select feed || '_p' || to_char(day, 'YYYYMMDD') $$;

create or replace function raw._grant_partition(part text) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  execute format('revoke all on raw.%I from public', part);
  execute format('grant select on raw.%I to crm_transformer', part);
  execute format('grant select, insert, truncate on raw.%I to crm_loader', part);
end $$;

-- The day's partition of a feed, created empty if missing; its name.
create or replace function raw.ensure_partition(feed text, day date) returns text
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare part text := raw.partition_name(feed, day);
begin
  perform raw.registered_feed(feed);
  if to_regclass(format('raw.%I', part)) is null then
    execute format('create table raw.%I partition of raw.%I for values from (%L) to (%L)',
                   part, feed, day, day + 1);
    perform raw._grant_partition(part);
  end if;
  return part;
end $$;

-- The clean path's work table load_work._load_<load_id> becomes the day's partition of
-- ``feed`` (replacing one there). It must be the load's, plain data with the feed's columns:
-- nothing in it may run code later as the owner (ANALYZE, ATTACH) or as a reader.
create or replace function raw.adopt_partition(feed text, day date, load_id bigint) returns text
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  parent regclass := raw.registered_feed(feed);
  part text := raw.partition_name(feed, day);
  work_name text := '_load_' || load_id;
  work regclass := to_regclass(format('load_work.%I', work_name));
  bad text;
begin
  if not exists (select 1 from audit.load_log l where l.load_id = adopt_partition.load_id
                 and l.feed = adopt_partition.feed and l.business_date = day and l.status = 'running') then
    raise exception 'load % is not a running load of % for %', load_id, feed, day using errcode = '42501';
  end if;
  if work is null then
    raise exception 'no work table load_work.% for load %', work_name, load_id using errcode = '42P01';
  end if;
  execute format('lock table %s in access exclusive mode', work);
  select case
    when c.relowner <> 'crm_loader'::regrole then 'not the loader''s'
    when c.relkind <> 'r' or c.relpersistence <> 'p' or c.relam <> (select oid from pg_am where amname = 'heap') then 'not a plain table'
    when c.relacl is not null or c.reloptions is not null or c.relrowsecurity then 'grants, options or row security'
    when exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attacl is not null) then 'column grants'
    when exists (select 1 from pg_trigger t where t.tgrelid = c.oid) then 'a trigger'
    when exists (select 1 from pg_rewrite r where r.ev_class = c.oid) then 'a rule'
    when exists (select 1 from pg_policy p where p.polrelid = c.oid) then 'a policy'
    when exists (select 1 from pg_index i where i.indrelid = c.oid) then 'an index'
    when exists (select 1 from pg_inherits h where h.inhrelid = c.oid or h.inhparent = c.oid) then 'inheritance'
    when exists (select 1 from pg_statistic_ext s where s.stxrelid = c.oid) then 'extended statistics'
    when exists (select 1 from pg_attrdef d where d.adrelid = c.oid) then 'a default'
    when exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attnum > 0
                 and (a.attidentity <> '' or a.attgenerated <> '')) then 'a generated column'
    when exists (select 1 from pg_constraint k where k.conrelid = c.oid and (k.conname <> '_day'
                 or pg_get_constraintdef(k.oid) <> format(
                   'CHECK (((_business_date >= %L::date) AND (_business_date < %L::date)))', day, day + 1)))
      then 'a constraint other than the day''s'
    when exists (
      (select attname, atttypid, atttypmod, attcollation from pg_attribute
       where attrelid = c.oid and attnum > 0 and not attisdropped
       except select attname, atttypid, atttypmod, attcollation from pg_attribute
       where attrelid = parent and attnum > 0 and not attisdropped)
      union all
      (select attname, atttypid, atttypmod, attcollation from pg_attribute
       where attrelid = parent and attnum > 0 and not attisdropped
       except select attname, atttypid, atttypmod, attcollation from pg_attribute
       where attrelid = c.oid and attnum > 0 and not attisdropped)) then 'columns unlike raw.' || feed
    end into bad
  from pg_class c where c.oid = work;
  if bad is not null then
    raise exception 'load_work.% cannot become a partition of raw.%: %', work_name, feed, bad
      using errcode = '42501';
  end if;
  execute format('alter table %s owner to %I', work, current_user);
  execute format('drop table if exists raw.%I', part);
  execute format('alter table %s set schema raw', work);
  execute format('alter table raw.%I rename to %I', work_name, part);
  -- The _day check spares ATTACH a scan of the new partition.
  execute format('alter table raw.%I attach partition raw.%I for values from (%L) to (%L)', feed, part, day, day + 1);
  execute format('alter table raw.%I drop constraint _day', part);
  perform raw._grant_partition(part);
  return part;
end $$;

-- ANALYZE of some columns of a day's partition (the owner's right alone in PostgreSQL 16).
create or replace function raw.analyze_partition(feed text, day date, columns text[]) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  part text := raw.partition_name(feed, day);
  rel regclass;
begin
  perform raw.registered_feed(feed);
  rel := to_regclass(format('raw.%I', part));
  if rel is null then
    raise exception 'no partition raw.%', part using errcode = '42P01';
  end if;
  execute format('analyze raw.%I (%s)', part,
                 (select string_agg(format('%I', c), ', ') from unnest(columns) c));
end $$;

-- Registered columns raw.<feed> lacks, added nullable; a type is a type name, nothing else.
create or replace function raw.add_feed_columns(feed text, names text[], types text[]) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare i int;
begin
  perform raw.registered_feed(feed);
  if coalesce(array_length(names, 1), 0) <> coalesce(array_length(types, 1), 0) then
    raise exception 'as many types as names' using errcode = '22023';
  end if;
  for i in 1 .. coalesce(array_length(names, 1), 0) loop
    if types[i] !~ '^[a-z][a-z0-9_ ]*(\([0-9]+( *, *[0-9]+)?\))?$' or to_regtype(types[i]) is null then
      raise exception 'not a type name: %', types[i] using errcode = '22023';
    end if;
    execute format('alter table raw.%I add column if not exists %I %s', feed, names[i], types[i]);
  end loop;
end $$;

do $$
declare f text;
begin
  foreach f in array array['registered_feed(text)', 'partition_name(text, date)', '_grant_partition(text)',
                           'ensure_partition(text, date)', 'adopt_partition(text, date, bigint)',
                           'analyze_partition(text, date, text[])', 'add_feed_columns(text, text[], text[])'] loop
    execute format('revoke all on function raw.%s from public', f);
  end loop;
end $$;
grant execute on function raw.ensure_partition(text, date), raw.adopt_partition(text, date, bigint),
  raw.analyze_partition(text, date, text[]), raw.add_feed_columns(text, text[], text[]) to crm_loader;
"""

DOWNGRADE = r"""
drop function if exists raw.add_feed_columns(text, text[], text[]);
drop function if exists raw.analyze_partition(text, date, text[]);
drop function if exists raw.adopt_partition(text, date, bigint);
drop function if exists raw.ensure_partition(text, date);
drop function if exists raw._grant_partition(text);
drop function if exists raw.partition_name(text, date);
drop function if exists raw.registered_feed(text);

drop policy if exists load_log_loader_closes on audit.load_log;
drop policy if exists load_log_loader_inserts on audit.load_log;
drop policy if exists load_log_read on audit.load_log;
alter table audit.load_log disable row level security;
revoke all on audit.load_log, audit.reprocess_requests from crm_loader;
grant select, insert, update on audit.load_log, audit.reprocess_requests to crm_loader;

alter default privileges in schema raw revoke select on tables from crm_transformer, crm_loader;
alter default privileges in schema quarantine revoke select, insert, delete on tables from crm_loader;
alter default privileges for role crm_loader in schema raw grant select on tables to crm_transformer;
alter default privileges for role crm_loader in schema audit grant select, update on tables to crm_transformer;
grant usage, create on schema raw, quarantine, audit to crm_loader;

-- The loader owns the raw and quarantine tables again.
do $$
declare t record;
begin
  for t in
    select c.oid::regclass as rel from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('raw', 'quarantine') and c.relkind in ('r', 'p')
  loop
    execute format('alter table %s owner to crm_loader', t.rel);
  end loop;
end $$;

drop schema if exists load_work cascade;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
