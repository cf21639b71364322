"""Shared fixtures: one real PostgreSQL per test session, a fresh database per test.

The server is the same embedded PostgreSQL the product runs (pgserver's binaries),
started in a temporary CRM_HOME on a free port, so tests never touch ``var/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from crm.settings import get_settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def crm_home() -> Iterator[Path]:
    # Not pytest's tmp_path: pytest prunes old base temp folders when other sessions start,
    # which would delete a live data directory. Short path: the socket lives in it (107 bytes).
    home = Path(tempfile.mkdtemp(prefix="crm-test-"))
    os.environ["CRM_HOME"] = str(home)
    os.environ["CRM_PG_PORT"] = str(_free_port())
    os.environ["CRM_SENSOR_TIMEOUT_SECONDS"] = "0"
    # dbt artifacts of this session (each xdist worker has its own): never dbt_project/target,
    # which another worker's dbt, or a developer's `make run`, may be rewriting meanwhile.
    os.environ["CRM_DBT_TARGET_DIR"] = str(home / "dbt-target")
    os.environ.pop("WAREHOUSE_URL", None)
    get_settings.cache_clear()
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(crm_home: Path) -> Iterator:
    from crm.warehouse import EmbeddedWarehouse

    server = EmbeddedWarehouse(get_settings())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def warehouse(pg_server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A freshly migrated database of its own; WAREHOUSE_URL points at it for the test."""
    from crm.warehouse import bootstrap, with_database

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = with_database(pg_server.url(), "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = with_database(pg_server.url(), name)
    bootstrap(url, get_settings())
    monkeypatch.setenv("WAREHOUSE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def db(warehouse: str) -> Iterator[psycopg.Connection]:
    """Owner connection to the test's database (autocommit)."""
    with psycopg.connect(warehouse, autocommit=True) as conn:
        yield conn
