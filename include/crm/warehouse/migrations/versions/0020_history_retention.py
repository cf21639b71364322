"""Retention of the warehouse's own history: marts and snapshots follow raw.

Raw is dropped day by day past ``CRM_RETAIN_RAW_DAYS`` (0017), but the incremental marts
(day-grained facts, daily segment and 360 snapshots, monthly features) and the dbt snapshots
(SCD2 versions of a customer's income, city, RM, status) kept every day they ever built:
personal history held longer than the records it came from, and a full refresh would no
longer reproduce the incremental tables. The layer ``history`` has raw's cutoff: the
transformer, which owns those tables, deletes their rows of periods before it (and snapshot
versions that ended before it) and records the count here.

- ``audit.retention_cutoffs`` gains the row ``history`` (raw's days and cutoff).
- ``audit.record_history_retention(business_day, rows, run_id)``: ``security definer``; the
  caller names the day and its count, the cutoff comes from the policy.
- ``crm_transformer`` may execute both (it reads the runs already).

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

CUTOFFS = r"""
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
                      ('logs', p.log_days, business_day - p.log_days){HISTORY};
end $$;
"""

UPGRADE = (
    r"""
alter table audit.retention_runs drop constraint retention_runs_layer_check;
alter table audit.retention_runs add constraint retention_runs_layer_check
    check (layer in ('landing', 'raw', 'quarantine', 'logs', 'history'));
"""
    + CUTOFFS.replace(
        "{HISTORY}", ",\n                      ('history', p.raw_days, business_day - p.raw_days)"
    )
    + r"""
create or replace function audit.record_history_retention(business_day date, rows_deleted bigint,
                                                          run_id text default null) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare c record;
begin
  if rows_deleted is null or rows_deleted < 0 then
    raise exception 'not a count: %', rows_deleted using errcode = '22023';
  end if;
  select * into c from audit.retention_cutoffs(business_day) r where r.layer = 'history';
  insert into audit.retention_runs (business_date, layer, retain_days, cutoff, rows_deleted, run_id)
  values (business_day, 'history', c.retain_days, c.cutoff, record_history_retention.rows_deleted,
          record_history_retention.run_id);
end $$;
revoke all on function audit.record_history_retention(date, bigint, text) from public;
grant execute on function audit.retention_cutoffs(date), audit.record_history_retention(date, bigint, text)
  to crm_transformer;
"""
)

DOWNGRADE = r"""
drop function if exists audit.record_history_retention(date, bigint, text);
revoke execute on function audit.retention_cutoffs(date) from crm_transformer;
delete from audit.retention_runs where layer = 'history';
alter table audit.retention_runs drop constraint retention_runs_layer_check;
alter table audit.retention_runs add constraint retention_runs_layer_check
    check (layer in ('landing', 'raw', 'quarantine', 'logs'));
""" + CUTOFFS.replace("{HISTORY}", "")


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
