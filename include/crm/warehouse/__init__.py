"""Where the warehouse is and how to reach it, as the owner or as a stage's role.

``WAREHOUSE_URL`` set: that server, nothing local is started.
Unset: the embedded PostgreSQL in ``var/pgdata`` (see :mod:`crm.warehouse.server`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg

from crm.settings import ROLES, Settings, check_secret, get_settings
from crm.warehouse.server import OWNER, EmbeddedWarehouse, WarehouseError

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
    """Connection string of the warehouse owner (migrations, admin)."""
    settings = settings or get_settings()
    if settings.warehouse_url:
        password = urlsplit(settings.warehouse_url).password
        if password:
            check_secret("WAREHOUSE_URL (its password, WAREHOUSE_PASSWORD)", unquote(password))
        return with_sslmode(settings.warehouse_url, settings)
    return with_sslmode(EmbeddedWarehouse(settings).url(), settings)


def role_url(role: str, settings: Settings | None = None, *, base_url: str | None = None) -> str:
    """Connection string for one of the platform roles, on the same server and database."""
    settings = settings or get_settings()
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    parts = urlsplit(base_url or owner_url(settings))
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
        server.start()
        with psycopg.connect(with_database(server.url(), "postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (settings.pg_database,)
            ).fetchone()
            if not exists:
                conn.execute(f'create database "{settings.pg_database}"')
    url = owner_url(settings)
    bootstrap(url, settings)
    return url


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
    migrate(url)
    sync_secrets(url, settings)
    # Raw and quarantine tables belong to the owner: the loader owns nothing another role
    # reads (it writes through grants and the owner's functions, migration 0014).
    with psycopg.connect(url) as conn:
        ensure_all_tables(conn, load_registry())
