"""Versioned warehouse migrations (Alembic), run programmatically.

Migrations live in ``migrations/versions`` as plain SQL executed by Alembic, so a
DBA can read exactly what runs. Secrets are not in migrations: :func:`sync_secrets`
sets the role passwords and the PII salt from the settings afterwards, and the retention
policy (:func:`sync_retention`).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from crm.settings import ROLES, Settings, check_pii_salt

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlalchemy_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgres", "postgresql") else url


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", _sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select version_num from public.alembic_version"
            " where to_regclass('public.alembic_version') is not null"
        ).fetchone()
    return row[0] if row else None


def sync_secrets(url: str, settings: Settings) -> None:
    """Role passwords onto the roles; the pseudonym key (CRM_PII_SALT, checked for length and
    entropy before any connection) into ``private.pii_salt``, which only the owner reads
    (changed only if it differs: a new key changes every pseudonym in dim_customer on its
    next build; a trigger derives the HMAC pads, migration 0013); then the retention policy
    (:func:`sync_retention`)."""
    from crm.privacy.retention import check_retention

    salt = check_pii_salt(settings.role_password("crm_pii_salt"))
    check_retention(settings)  # refused before anything changes
    with psycopg.connect(url, autocommit=True) as conn:
        for role in ROLES:
            # The SCRAM verifier, computed here by libpq (PQencryptPasswordConn): the clear-text
            # password never reaches the server, its statement log or pg_stat_activity.
            verifier = conn.pgconn.encrypt_password(
                settings.role_password(role).encode(), role.encode(), b"scram-sha-256"
            )
            conn.execute(
                sql.SQL("alter role {} with login password {}").format(
                    sql.Identifier(role), sql.Literal(verifier.decode())
                )
            )
        # The salt travels as COPY data, which no statement log or pg_stat_activity shows
        # (a bound parameter is logged with its statement under log_statement = 'all').
        with conn.transaction():
            conn.execute("create temp table _pii_salt (salt text) on commit drop")
            with conn.cursor().copy("copy _pii_salt (salt) from stdin") as copy:
                copy.write_row((salt,))
            conn.execute(
                "insert into private.pii_salt (salt) select salt from _pii_salt on conflict (singleton) do update"
                " set salt = excluded.salt, set_at = clock_timestamp() where pii_salt.salt <> excluded.salt"
            )
    sync_retention(url, settings)


def sync_retention(url: str, settings: Settings) -> None:
    """The retention policy (``CRM_RETAIN_*``, checked first: raw must outlive the marts'
    longest look-back) into ``private.retention_policy``, which only the owner reads: the
    retention task's role names a business day, never a cutoff (migration 0017)."""
    from crm.privacy.retention import check_retention, raw_feeds_kept

    check_retention(settings)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            insert into private.retention_policy
                (singleton, landing_days, raw_days, quarantine_days, log_days, raw_keep_feeds)
            values (true, %s, %s, %s, %s, %s)
            on conflict (singleton) do update set landing_days = excluded.landing_days,
                raw_days = excluded.raw_days, quarantine_days = excluded.quarantine_days,
                log_days = excluded.log_days, raw_keep_feeds = excluded.raw_keep_feeds,
                set_at = clock_timestamp()
            where (retention_policy.landing_days, retention_policy.raw_days, retention_policy.quarantine_days,
                   retention_policy.log_days, retention_policy.raw_keep_feeds)
                is distinct from (excluded.landing_days, excluded.raw_days, excluded.quarantine_days,
                   excluded.log_days, excluded.raw_keep_feeds)
            """,
            (
                settings.retain_landing_days,
                settings.retain_raw_days,
                settings.retain_quarantine_days,
                settings.retain_log_days,
                raw_feeds_kept(settings),
            ),
        )
