"""One attempt at loading a scanned file: what every step of a load works on."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from psycopg import Connection

from crm.feeds import Feed, Registry
from crm.ingest.scan import FileFacts


@dataclass(frozen=True)
class Attempt:
    """A load of ``path`` as ``feed``'s file for ``day``, under ``load_id`` in the load log
    (``started`` is its ``_loaded_at``), inside the transaction open on ``conn``."""

    conn: Connection
    feed: Feed
    registry: Registry
    day: dt.date
    path: Path
    facts: FileFacts
    load_id: int
    started: dt.datetime
