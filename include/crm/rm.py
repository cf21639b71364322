"""``crm rm``: logins for relationship managers, each seeing only their own customers.

An RM login is a PostgreSQL role in the group ``crm_rm`` (migration 0012) mapped to its
``rm_id`` in ``security.rm_logins``; the row policies of ``rm.customer_contacts`` and
``marts.rm_worklist`` (dbt macro ``rm_sees_own_customers``) compare that ``rm_id`` with the
row's. The password comes from stdin or ``CRM_RM_PASSWORD``, never from the command line (it
would show in ``ps`` and the shell history), and reaches the server as a SCRAM verifier only.

Cheap to import (``crm`` mounts it on every start): typer and the standard library only.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Annotated

import typer

PASSWORD_ENV = "CRM_RM_PASSWORD"
MIN_PASSWORD_LENGTH = 12
# Each RM login's own connection limit: a desktop tool or two, never the server's pool.
LOGIN_CONNECTION_LIMIT = 2
# Lower-case identifiers only, so the name is the same quoted or not; platform names refused.
ROLE_NAME = re.compile(r"[a-z][a-z0-9_]{2,62}")
RESERVED_PREFIXES = ("crm_", "pg_")

app = typer.Typer(
    help="Relationship-manager logins: each RM sees only their own customers.", no_args_is_help=True
)


@app.callback()
def _rm() -> None:
    """Relationship-manager logins: each RM sees only their own customers."""


class RmLoginError(ValueError):
    """A grant or revoke refused (bad name, weak password, a role that is not an RM login)."""


def check_role_name(role: str) -> str:
    if not ROLE_NAME.fullmatch(role) or role.startswith(RESERVED_PREFIXES):
        raise RmLoginError(
            "role name: 3-63 lower-case letters, digits or _, starting with a letter, not crm_* or pg_*"
        )
    return role


def check_password(password: str) -> str:
    from crm.settings import is_placeholder

    password = password.rstrip("\r\n")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise RmLoginError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if is_placeholder(password):
        raise RmLoginError("the password is a placeholder (as in .env.example): set a real secret")
    return password


def _is_rm_login(conn, role: str) -> bool | None:
    """None: no such role; True: a member of crm_rm; False: some other role (never taken over)."""
    row = conn.execute(
        "select pg_has_role(oid, 'crm_rm', 'member') and rolcanlogin from pg_roles where rolname = %s",
        (role,),
    ).fetchone()
    return None if row is None else bool(row[0])


def grant_login(url: str, role: str, rm_id: str, password: str) -> bool:
    """Create (or update) login ``role`` for RM ``rm_id``; True if the role was new."""
    import psycopg
    from psycopg import sql

    check_role_name(role)
    password = check_password(password)
    rm_id = rm_id.strip()
    if not rm_id:
        raise RmLoginError("--rm-id is empty")
    with psycopg.connect(url) as conn:
        existing = _is_rm_login(conn, role)
        if existing is False:
            raise RmLoginError("that role exists and is not an RM login: choose another name")
        # libpq computes the verifier: the clear password never reaches the server or its logs.
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
        ident = sql.Identifier(role)
        if existing is None:
            conn.execute(sql.SQL("create role {} login in role crm_rm").format(ident))
        conn.execute(
            sql.SQL(
                # Not superuser, replication or bypassrls: the owner (no superuser) may not name
                # those, and a role it creates never has them.
                "alter role {} with login nocreatedb nocreaterole connection limit {} password {}"
            ).format(ident, sql.Literal(LOGIN_CONNECTION_LIMIT), sql.Literal(verifier))
        )
        # The access audit logs what the login reads in this database (migration 0016).
        if conn.execute("select has_parameter_privilege('log_statement', 'set')").fetchone()[0]:
            conn.execute(
                sql.SQL("alter role {} in database {} set log_statement = 'all'").format(
                    ident, sql.Identifier(conn.info.dbname)
                )
            )
        conn.execute(
            "insert into security.rm_logins (role_name, rm_id) values (%s, %s)"
            " on conflict (role_name) do update set rm_id = excluded.rm_id, granted_at = now()",
            (role, rm_id),
        )
    return existing is None


def revoke_login(url: str, role: str) -> bool:
    """Drop RM login ``role`` (it owns nothing and holds no grants of its own, only its
    membership in crm_rm) and its mapping in this database; False if there was neither."""
    import psycopg
    from psycopg import sql

    check_role_name(role)
    with psycopg.connect(url) as conn:
        existing = _is_rm_login(conn, role)
        if existing is False:
            raise RmLoginError("that role is not an RM login")
        mapped = conn.execute("delete from security.rm_logins where role_name = %s", (role,)).rowcount
        if existing:
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))
    return bool(existing or mapped)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline()
    value = os.environ.get(PASSWORD_ENV)
    if not value:
        raise RmLoginError(f"no password: pipe it with --password-stdin or set {PASSWORD_ENV}")
    return value


@app.command("grant")
def grant_cmd(
    rm_id: Annotated[str, typer.Option("--rm-id", help="The relationship manager (rm_id of the marts).")],
    role: Annotated[str, typer.Option("--role", help="Login name to create or update (not crm_*).")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help=f"Read the password from stdin (else {PASSWORD_ENV}).")
    ] = False,
) -> None:
    """Create or update an RM login that sees only that RM's customers (password: stdin or CRM_RM_PASSWORD)."""
    from crm.warehouse import ensure_ready

    try:
        created = grant_login(ensure_ready(), role, rm_id, _read_password(password_stdin))
    except RmLoginError as err:
        typer.echo(f"crm rm grant: {err}", err=True)
        raise typer.Exit(2) from None
    # Login names are often people's names: not echoed.
    typer.echo(f"RM login {'created' if created else 'updated'}.")


@app.command("revoke")
def revoke_cmd(role: Annotated[str, typer.Option("--role", help="The RM login to drop.")]) -> None:
    """Drop an RM login and its mapping."""
    from crm.warehouse import ensure_ready

    try:
        dropped = revoke_login(ensure_ready(), role)
    except RmLoginError as err:
        typer.echo(f"crm rm revoke: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"RM login {'dropped' if dropped else 'not found'}.")
