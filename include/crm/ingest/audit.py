"""``audit.load_log`` and ``audit.reprocess_requests``: what the loader records of each attempt.

A load is a row in ``audit.load_log``: ``running`` when it starts, ``loaded`` when it
commits (the day's earlier load becomes ``superseded``), ``refused`` or ``failed``
(written in its own transaction, since the load rolled back). A day loaded after a later
day of the same feed asks for downstream reprocessing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import Connection

from crm.feeds import Feed
from crm.ingest.rules import FileRule

if TYPE_CHECKING:
    from crm.ingest.loader import LoadResult

log = logging.getLogger(__name__)


def loaded_before(conn: Connection, feed: Feed, day: dt.date, sha256: str) -> int | None:
    """The load that already loaded this very file (by SHA-256) for the day, if any."""
    done = conn.execute(
        "select load_id from audit.load_log where feed = %s and business_date = %s"
        " and file_sha256 = %s and status = 'loaded'",
        (feed.name, day, sha256),
    ).fetchone()
    return done[0] if done else None


def start_load(
    conn: Connection,
    feed: Feed,
    day: dt.date,
    path: Path,
    sha256: str,
    run_id: str | None,
    started: dt.datetime,
) -> int:
    """A new ``running`` load; its load_id."""
    return conn.execute(
        "insert into audit.load_log (feed, business_date, file_path, file_sha256, status, run_id, started_at)"
        " values (%s, %s, %s, %s, 'running', %s, %s) returning load_id",
        (feed.name, day, str(path), sha256, run_id, started),
    ).fetchone()[0]


def warn_if_day_emptied(conn: Connection, feed: Feed, day: dt.date, warnings: list[str]) -> None:
    """A file without rows may replace a day that held rows (a correction): say so."""
    previous = conn.execute(
        "select load_id, rows_loaded from audit.load_log"
        " where feed = %s and business_date = %s and status = 'loaded' and rows_loaded > 0",
        (feed.name, day),
    ).fetchone()
    if previous:
        warnings.append(
            f"{FileRule.DAY_EMPTIED}: the day held {previous[1]} rows (load {previous[0]}); this file has none"
        )
        log.warning("feed=%s day=%s: a file without rows replaces %d rows", feed.name, day, previous[1])


def request_reprocess_if_late(conn: Connection, feed: Feed, day: dt.date, load_id: int) -> dt.date | None:
    """The latest later day of the feed already loaded, if any: then this day's partition
    is late and downstream reprocessing is requested for it."""
    later = conn.execute(
        "select max(business_date) from audit.load_log"
        " where feed = %s and status = 'loaded' and business_date > %s",
        (feed.name, day),
    ).fetchone()[0]
    if later is not None:
        conn.execute(
            "insert into audit.reprocess_requests (feed, business_date, reason, load_id)"
            " values (%s, %s, 'late_partition', %s)",
            (feed.name, day, load_id),
        )
    return later


def mark_loaded(conn: Connection, result: LoadResult) -> None:
    """The load is the day's one ``loaded`` load; the one before it is ``superseded``."""
    conn.execute(
        "update audit.load_log set status = 'superseded'"
        " where feed = %s and business_date = %s and status = 'loaded'",
        (result.feed, result.business_date),
    )
    conn.execute(
        "update audit.load_log set status = 'loaded', rows_in_file = %s, rows_loaded = %s,"
        " rows_quarantined = %s, warnings = %s, finished_at = clock_timestamp() where load_id = %s",
        (
            result.rows_in_file,
            result.rows_loaded,
            result.rows_quarantined,
            json.dumps(result.warnings),
            result.load_id,
        ),
    )


def record_failure(
    conn: Connection,
    feed: Feed,
    day: dt.date,
    path: Path,
    sha: str,
    run_id: str | None,
    started: dt.datetime,
    err: Exception,
    status: str,
) -> None:
    """Write the failed attempt (``status`` refused or failed) to the load log in its own
    transaction (the load rolled back)."""
    rule = getattr(err, "rule", type(err).__name__)
    try:
        with conn.transaction():
            conn.execute(
                "insert into audit.load_log (feed, business_date, file_path, file_sha256, status, rule, error,"
                " run_id, started_at, finished_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp())",
                (feed.name, day, str(path), sha, status, rule, str(err)[:4000], run_id, started),
            )
    except psycopg.Error:
        log.exception("could not record the failed load of %s", path)
