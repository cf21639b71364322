"""Ingestion entry points shared by the Airflow tasks and the CLI."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from crm.feeds import Feed, load_registry
from crm.ingest.lines import FileRefused
from crm.ingest.loader import LoadFailed, LoadResult, load_file
from crm.ingest.rules import FileRule
from crm.settings import Settings, get_settings

log = logging.getLogger(__name__)


def landing_path(feed: Feed, day: dt.date, landing: Path | None = None) -> Path:
    landing = landing or get_settings().landing
    return landing / feed.name / f"{day:%Y-%m-%d}" / feed.file


def load_feed_day(
    feed_name: str,
    day: dt.date,
    *,
    landing: Path | None = None,
    run_id: str | None = None,
    force: bool = False,
    settings: Settings | None = None,
) -> LoadResult:
    """Load one feed's file for one day as the ``crm_loader`` role."""
    from crm.warehouse import connect

    registry = load_registry()
    feed = registry.feed(feed_name)
    root = landing or (settings or get_settings()).landing
    path = landing_path(feed, day, root)
    with connect("crm_loader", settings=settings) as conn:
        return load_file(conn, feed, day, path, run_id=run_id, force=force, registry=registry, root=root)


def ingest_day(
    day: dt.date,
    feeds: list[str] | None = None,
    *,
    landing: Path | None = None,
    force: bool = False,
    settings: Settings | None = None,
) -> tuple[list[LoadResult], list[FileRefused]]:
    """Load every feed (in dependency order) for a day; a refused file does not stop the others.

    Feeds that depend on a refused feed are still attempted: their rows that
    reference unknown keys are quarantined, not lost. Whatever goes wrong with one feed
    (a refusal by rule, or an unexpected error: the warehouse gone, say) is reported for
    that feed, in one line, and the next feed loads.
    """
    registry = load_registry()
    names = feeds or [f.name for f in registry.load_order()]
    results: list[LoadResult] = []
    refused: list[FileRefused] = []
    for feed in registry.load_order():
        if feed.name not in names:
            continue
        try:
            results.append(load_feed_day(feed.name, day, landing=landing, force=force, settings=settings))
        except FileRefused as err:
            refused.append(err)
        except Exception as err:  # one feed's failure must not end the day
            log.error("feed=%s day=%s: unexpected error", feed.name, day, exc_info=err)
            path = landing_path(feed, day, landing or (settings or get_settings()).landing)
            refused.append(
                LoadFailed(
                    path,
                    FileRule.LOAD_ERROR,
                    f"unexpected {type(err).__name__} before the load started; the traceback is in the log",
                )
            )
    return results, refused
