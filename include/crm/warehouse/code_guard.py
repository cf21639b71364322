"""Only the owner creates code: an event trigger refuses functions, procedures, triggers and
the like from every other role.

The stage roles must create tables (dbt, the loader's work tables), and PostgreSQL's
CREATE privilege on a schema covers functions too. A function is how one role makes
another run its code: ``crm_transformer`` owns the marts ``crm_ml`` and the BI role read, and
a row-level security policy of its own calling its own function would run that function
*as the reader* on every SELECT (shown by tests/warehouse/test_role_matrix.py). None of the
stage roles needs code of its own (dbt here creates tables and views, the loader writes
through the owner's functions), so an event trigger at ``ddl_command_start`` refuses code
from anyone but ``crm_owner`` and superusers. Event triggers are superuser-only, so
``crm_admin`` installs it: in ``template1`` (every database created later, test and bench
copies included, starts with it) and in the platform's database.
"""

from __future__ import annotations

from psycopg import sql

SCHEMA = "crm_guard"
TRIGGER = "crm_only_owner_creates_code"
# Commands that create or change code, or attach it to a relation.
CODE_TAGS = (
    "CREATE FUNCTION",
    "ALTER FUNCTION",
    "CREATE PROCEDURE",
    "ALTER PROCEDURE",
    "CREATE AGGREGATE",
    "ALTER AGGREGATE",
    "CREATE OPERATOR",
    "CREATE CAST",
    "CREATE TRIGGER",
    "CREATE RULE",
    "CREATE LANGUAGE",
    "CREATE TRANSFORM",
    "CREATE CONVERSION",
)

GUARD = """
create schema if not exists {schema};
revoke all on schema {schema} from public;
create or replace function {schema}.refuse_code() returns event_trigger
    language plpgsql
    set search_path = pg_catalog, pg_temp
as $f$
begin
    -- current_user: the role running the command (this function is no security definer).
    if not exists (
        select 1 from pg_roles where rolname = current_user and (rolsuper or rolname = 'crm_owner')
    ) then
        raise exception 'role % may not run % here: only crm_owner creates code in the warehouse', current_user, tg_tag
            using errcode = 'insufficient_privilege',
                  hint = 'stage roles create tables and views only (docs/security.md, role matrix)';
    end if;
end
$f$;
revoke all on function {schema}.refuse_code() from public;
drop event trigger if exists {trigger};
create event trigger {trigger} on ddl_command_start
    when tag in ({tags})
    execute function {schema}.refuse_code();
"""


def ensure_code_guard(conn) -> None:
    """On a superuser's connection to one database: install (or refresh) the guard there."""
    conn.execute(
        sql.SQL(GUARD).format(
            schema=sql.Identifier(SCHEMA),
            trigger=sql.Identifier(TRIGGER),
            tags=sql.SQL(", ").join(map(sql.Literal, CODE_TAGS)),
        )
    )
