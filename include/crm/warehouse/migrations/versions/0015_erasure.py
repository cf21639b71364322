"""Erasure on request: the erasure audit and the block list of erased customers (keyed hashes only).

``audit.erasures``: one row per ``crm privacy erase`` (who, when, why, rows per table, files),
naming the customer only by ``private.pseudonym(customer_id)``. ``audit.erased_subjects``:
the block list, the keyed pseudonyms of every erased customer id and of their account ids.
Both are the owner's alone: no other role reads or writes them.

The loader may ask two questions, through owner functions that return no hash:

- ``audit.any_erased()``: is the block list empty? (one call per load: an empty list costs
  the load nothing more.)
- ``audit.erased_values(text[])``: which of these ids are erased? Set-based: the loader
  passes the distinct candidate values of a whole file at once.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

UPGRADE = """
create table audit.erasures (
    erasure_id bigint generated always as identity primary key,
    subject_hash text not null check (subject_hash ~ '^[0-9a-f]{64}$'),
    erased_at timestamptz not null default clock_timestamp(),
    db_user text not null default session_user,
    os_user text not null,
    reason text not null check (length(btrim(reason)) > 0),
    already_erased boolean not null,
    row_counts jsonb not null default '{}'::jsonb,
    file_counts jsonb not null default '{}'::jsonb
);
comment on table audit.erasures is
    'One row per crm privacy erase: the customer as private.pseudonym(id) only, counts only. Owner only.';
create index on audit.erasures (subject_hash);

create table audit.erased_subjects (
    subject_hash text primary key check (subject_hash ~ '^[0-9a-f]{64}$'),
    kind text not null check (kind in ('customer', 'account')),
    erasure_id bigint not null references audit.erasures,
    erased_at timestamptz not null default clock_timestamp()
);
comment on table audit.erased_subjects is
    'Block list: private.pseudonym of erased customer and account ids; the loader quarantines '
    'later rows naming them (ERASED_SUBJECT). Owner only.';
revoke all on audit.erasures, audit.erased_subjects from public;

create function audit.any_erased() returns boolean
    language sql stable security definer parallel safe
    set search_path = pg_catalog, pg_temp
as $f$
    select exists (select 1 from audit.erased_subjects)
$f$;

create function audit.erased_values(candidates text[]) returns setof text
    language sql stable strict security definer parallel safe
    set search_path = pg_catalog, pg_temp
as $f$
    select distinct c.value
    from unnest(candidates) as c(value)
    where c.value is not null
      and exists (select 1 from audit.erased_subjects e where e.subject_hash = private.pseudonym(c.value))
$f$;
comment on function audit.erased_values(text[]) is
    'The candidates whose keyed pseudonym is on the erasure block list (no hash is returned).';
revoke all on function audit.any_erased(), audit.erased_values(text[]) from public;
grant execute on function audit.any_erased(), audit.erased_values(text[]) to crm_loader;
"""

DOWNGRADE = """
drop function audit.erased_values(text[]);
drop function audit.any_erased();
drop table audit.erased_subjects;
drop table audit.erasures;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
