"""The file sensor's check: has the day's file arrived?"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from crm.feeds import load_registry
from crm.ingest.service import landing_path
from crm.settings import get_settings

log = logging.getLogger(__name__)


def file_arrived(feed_name: str, day: dt.date, context: dict[str, Any] | None = None) -> bool:
    """True once the file is there. Past the timeout it raises, naming the file (rule FILE_MISSING)."""
    from airflow.sdk.exceptions import AirflowSensorTimeout

    settings = get_settings()
    feed = load_registry().feed(feed_name)
    path = landing_path(feed, day, settings.landing)
    if path.exists():
        return True
    timeout = settings.sensor_timeout_seconds
    if timeout is not None and context is not None:
        ti = context.get("ti")
        started = getattr(ti, "start_date", None)
        waited = (dt.datetime.now(dt.UTC) - started).total_seconds() if started else 0
        if waited >= timeout:
            _record_missing(feed_name, day, path)
            raise AirflowSensorTimeout(f"{path}: no file delivered for {day} (rule FILE_MISSING)")
    log.info("feed=%s day=%s waiting for %s", feed_name, day, path)
    return False


def _record_missing(feed_name: str, day: dt.date, path) -> None:
    from crm.ingest.loader import FileRefused, record_refusal
    from crm.warehouse import connect

    feed = load_registry().feed(feed_name)
    with connect("crm_loader") as conn:
        record_refusal(
            conn, feed, day, path, FileRefused(path, "FILE_MISSING", "no file delivered for the day")
        )
