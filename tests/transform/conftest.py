"""A built warehouse per test, copied from one built per session.

Generating, loading and building the small bank costs ~12 s; PostgreSQL copies the built
database (CREATE DATABASE ... TEMPLATE) in well under a second, so each test still gets a
database of its own that it may change freely.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from crm.settings import get_settings

from .bank import CUSTOMERS, DAYS, SEED, START, load_days


def _admin(pg_server) -> str:
    from crm.warehouse import with_database

    return with_database(pg_server.url(), "postgres")


@pytest.fixture(scope="session")
def built_template(pg_server, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """Days 1-7 of the bank loaded and fully built (dbt build passes, or the session fails)."""
    from crm.generator import generate
    from crm.transform import build
    from crm.warehouse import bootstrap, with_database

    name = f"tpl_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin(pg_server), autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = with_database(pg_server.url(), name)
    bootstrap(url, get_settings())
    work = tmp_path_factory.mktemp("bank")
    generate(
        customers=CUSTOMERS, start=START, days=DAYS, seed=SEED, out=work / "landing", truth=work / "truth"
    )
    load_days(work / "landing", range(DAYS - 1), base_url=url)
    build(START + dt.timedelta(days=DAYS - 2), full_refresh=True, base_url=url)
    yield name, work / "landing"
    with psycopg.connect(_admin(pg_server), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def warehouse(pg_server, built_template, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A copy of the built warehouse; WAREHOUSE_URL points at it for the test."""
    from crm.warehouse import with_database

    template, _ = built_template
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin(pg_server), autocommit=True) as conn:
        # A template must have no other sessions (dbt's may linger a moment). Client sessions
        # only: CREATE DATABASE ends autovacuum workers itself, and the owner (no superuser)
        # may not signal them.
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()"
            " and backend_type = 'client backend'",
            (template,),
        )
        conn.execute(f'create database "{name}" template "{template}"')
    url = with_database(pg_server.url(), name)
    monkeypatch.setenv("WAREHOUSE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()
    with psycopg.connect(_admin(pg_server), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def built(built_template, warehouse) -> Path:
    """The landing folder of the bank in the test's built warehouse (day 8 not loaded yet)."""
    return built_template[1]
