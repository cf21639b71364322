"""A warehouse with months of history, built once for the module that trains on it.

``history_warehouse``: a database of its own holding a generated bank loaded and built by
``crm.history`` (the real loader, the real dbt project). Building it costs minutes, so it
is package-scoped (built once for tests/ml; the modules that use it share the xdist group
"history", so one worker builds it); its size comes from CRM_TEST_HISTORY_CUSTOMERS / CRM_TEST_HISTORY_DAYS.
Default 1,000 customers x 273 days (2025-01-01..09-30): six labelled months, the fewest
for two training months, the three-month horizon gap and one test month. 2,000 x 400
took 23 min to load on the shared 2-core machine (load average ~10; the loader's
reference checks probe every daily partition, so each day costs more than the one before).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from crm.settings import get_settings

HISTORY_START = dt.date(2025, 1, 1)


@dataclass(frozen=True)
class HistoryWarehouse:
    url: str
    first: dt.date
    last: dt.date
    customers: int
    result: object  # crm.history.HistoryResult
    seconds: dict[str, float]


def _database(pg_server) -> str:
    from crm.warehouse import bootstrap, with_database

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = with_database(pg_server.url(), "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = with_database(pg_server.url(), name)
    bootstrap(url, get_settings())
    return url


def _drop(pg_server, url: str) -> None:
    from crm.warehouse import with_database

    name = url.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(with_database(pg_server.url(), "postgres"), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="package")
def history_warehouse(pg_server) -> Iterator[HistoryWarehouse]:
    """Generated, loaded and built with crm.history; WAREHOUSE_URL and the landing folder
    point at it until the package's last test."""
    from crm.history import build_history

    customers = int(os.environ.get("CRM_TEST_HISTORY_CUSTOMERS", "1000"))
    days = int(os.environ.get("CRM_TEST_HISTORY_DAYS", "273"))
    last = HISTORY_START + dt.timedelta(days=days - 1)
    folder = Path(tempfile.mkdtemp(prefix="crm-history-"))
    with pytest.MonkeyPatch.context() as mp:
        url = _database(pg_server)
        mp.setenv("WAREHOUSE_URL", url)
        mp.setenv("CRM_LANDING_DIR", str(folder / "landing"))
        mp.setenv("CRM_TRUTH_DIR", str(folder / "truth"))
        get_settings.cache_clear()
        started = time.monotonic()
        result = build_history(HISTORY_START, last, customers=customers, seed=11, echo=print)
        seconds = {**result.seconds, "total": round(time.monotonic() - started, 1)}
        print(f"\nhistory fixture: {customers} customers x {days} days: {result.summary()}")
        try:
            yield HistoryWarehouse(url, HISTORY_START, last, customers, result, seconds)
        finally:
            get_settings.cache_clear()
            _drop(pg_server, url)
            shutil.rmtree(folder, ignore_errors=True)
    get_settings.cache_clear()
