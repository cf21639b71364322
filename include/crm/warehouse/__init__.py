"""Where the warehouse is and how to reach it, as the owner or as a stage's role.

``WAREHOUSE_URL`` set: that server, nothing local is started.
Unset: the embedded PostgreSQL in ``var/pgdata`` (see :mod:`crm.warehouse.server`).
``CRM_WAREHOUSE_ADDRESS`` (no credentials) instead: a process that connects only as the stage
roles (Airflow); :func:`owner_url` refuses there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg

from crm.settings import ADMIN, ROLES, Settings, check_secret, get_settings
from crm.warehouse.code_guard import ensure_code_guard
from crm.warehouse.server import (
    OWNER,
    EmbeddedWarehouse,
    WarehouseError,
    ensure_owned_database,
    ensure_owner_role,
)

__all__ = [
    "OWNER",
    "ROLES",
    "EmbeddedWarehouse",
    "WarehouseError",
    "bootstrap",
    "connect",
    "ensure_ready",
    "owner_url",
    "role_url",
    "server_address",
]

log = logging.getLogger(__name__)


def with_sslmode(url: str, settings: Settings) -> str:
    """``url`` with ``sslmode=<CRM_PG_SSLMODE>`` in its query when that is set (replacing one there)."""
    if not settings.pg_sslmode:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "sslmode"]
    query.append(("sslmode", settings.pg_sslmode))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, safe="/"), parts.fragment))


def owner_url(settings: Settings | None = None) -> str:
    """Connection string of the warehouse owner (migrations, admin). Refused in a process
    given only ``CRM_WAREHOUSE_ADDRESS`` (Airflow's): it has the stage roles' connections."""
    settings = settings or get_settings()
    if settings.warehouse_address and not settings.warehouse_url:
        raise WarehouseError(
            "no owner URL here: this process connects as the stage roles only (CRM_WAREHOUSE_ADDRESS)"
        )
    if settings.warehouse_url:
        password = urlsplit(settings.warehouse_url).password
        if password:
            check_secret("WAREHOUSE_URL (its password, WAREHOUSE_PASSWORD)", unquote(password))
        return with_sslmode(settings.warehouse_url, settings)
    return with_sslmode(EmbeddedWarehouse(settings).url(), settings)


def without_credentials(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def server_address(settings: Settings | None = None) -> str:
    """The warehouse's URL without user or password: host, port, database, query."""
    settings = settings or get_settings()
    if settings.warehouse_url:
        url = without_credentials(settings.warehouse_url)
    elif settings.warehouse_address:
        url = without_credentials(settings.warehouse_address)
    else:
        server = EmbeddedWarehouse(settings)
        url = f"postgresql://127.0.0.1:{server.port}/{settings.pg_database}"
    return with_sslmode(url, settings)


def role_url(role: str, settings: Settings | None = None, *, base_url: str | None = None) -> str:
    """Connection string for one of the platform roles, on the same server and database
    (``base_url``'s, else :func:`server_address`; no owner password is read)."""
    settings = settings or get_settings()
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    parts = urlsplit(base_url or server_address(settings))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{role}:{quote(settings.role_password(role), safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return with_sslmode(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), settings)


def redact(url: str) -> str:
    """The URL with its password replaced by ``***`` (for logs and terminals)."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def connect(role: str | None = None, *, autocommit: bool = False, settings: Settings | None = None):
    """Open a psycopg connection as the owner (``role=None``) or as a platform role."""
    url = owner_url(settings) if role is None else role_url(role, settings)
    return psycopg.connect(url, autocommit=autocommit)


def ensure_ready(settings: Settings | None = None) -> str:
    """Start the embedded server if needed, create the database, migrate, set role passwords.

    Idempotent; returns the owner URL.
    """
    settings = settings or get_settings()
    if settings.embedded:
        server = EmbeddedWarehouse(settings)
        server.start()  # crm_owner exists, no superuser (crm_admin creates it)
        with psycopg.connect(server.socket_url("postgres", role=ADMIN), autocommit=True) as conn:
            ensure_owned_database(conn, settings.pg_database)
        server.ensure_code_guard(settings.pg_database)  # a database from before the guard
    elif settings.admin_password:
        ensure_owner(settings)
    url = owner_url(settings)
    bootstrap(url, settings)
    return url


def admin_url(settings: Settings) -> str:
    """``crm_admin`` on the external server's ``postgres`` database (CRM_ADMIN_PASSWORD)."""
    parts = urlsplit(server_address(settings))
    netloc = f"{ADMIN}:{quote(settings.role_password(ADMIN), safe='')}@{parts.netloc}"
    return urlunsplit((parts.scheme, netloc, "/postgres", parts.query, parts.fragment))


def ensure_owner(settings: Settings) -> None:
    """External warehouse with CRM_ADMIN_PASSWORD (docker-compose): as ``crm_admin``, create or
    correct ``crm_owner`` (no superuser) and give it the database of WAREHOUSE_URL."""
    database = urlsplit(settings.warehouse_url or "").path.lstrip("/") or settings.pg_database
    password = urlsplit(owner_url(settings)).password
    if not password:
        raise WarehouseError("WAREHOUSE_URL carries no password for crm_owner")
    try:
        conn = psycopg.connect(admin_url(settings), autocommit=True)
    except psycopg.OperationalError as err:
        raise WarehouseError(
            f"cannot connect as {ADMIN} (CRM_ADMIN_PASSWORD): {str(err).strip()[-200:]}. A warehouse"
            " created before the crm_admin/crm_owner split has no crm_admin (docs/security.md)"
        ) from None
    with conn:
        ensure_owner_role(conn, unquote(password))
        ensure_owned_database(conn, database)
    # Only the owner creates code (crm.warehouse.code_guard): here and in every later database.
    for name in ("template1", database):
        with psycopg.connect(with_database(admin_url(settings), name), autocommit=True) as conn:
            ensure_code_guard(conn)


def check_owner_is_no_superuser(conn) -> None:
    """:class:`WarehouseError` if the connection's role (the owner) is a superuser."""
    row = conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()
    if row and row[0]:
        raise WarehouseError(
            "the warehouse owner is a superuser (it could run operating-system commands through COPY ..."
            " TO PROGRAM): make it an ordinary role with CREATEROLE and CREATEDB, or re-create an"
            " embedded warehouse (docs/security.md, 'The owner is no superuser')"
        )


@contextmanager
def scratch_database(name: str, settings: Settings | None = None) -> Iterator[str]:
    """A new, bootstrapped database ``name`` on the warehouse server (replacing one left
    behind); yields its owner URL and drops it afterwards. For benchmarks."""
    settings = settings or get_settings()
    admin = with_database(owner_url(settings), "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}"')
    try:
        url = with_database(owner_url(settings), name)
        bootstrap(url, settings)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def bootstrap(url: str, settings: Settings | None = None) -> None:
    """Migrate the database at ``url``, set its secrets (role passwords, PII salt), create the
    registry's raw tables."""
    from crm.feeds import load_registry
    from crm.ingest.tables import ensure_all_tables
    from crm.warehouse.migrate import migrate, sync_secrets

    settings = settings or get_settings()
    with psycopg.connect(url) as conn:
        check_owner_is_no_superuser(conn)
    migrate(url)
    sync_secrets(url, settings)
    # Raw and quarantine tables belong to the owner: the loader owns nothing another role
    # reads (it writes through grants and the owner's functions, migration 0014).
    with psycopg.connect(url) as conn:
        ensure_all_tables(conn, load_registry())
