"""The small generated bank the dbt tests build: 400 customers, 8 days (the last one held back)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg

from crm.feeds import load_registry
from crm.ingest import load_file
from crm.warehouse import role_url

START = dt.date(2026, 1, 1)
DAYS = 8
CUSTOMERS = 400
SEED = 3
REG = load_registry()


def load_days(landing: Path, days: range, base_url: str | None = None) -> None:
    """Load days (offsets from START) of every feed through the real loader, as crm_loader."""
    with psycopg.connect(role_url("crm_loader", base_url=base_url)) as conn:
        for d in days:
            day = START + dt.timedelta(days=d)
            for feed in REG.load_order():
                load_file(conn, feed, day, landing / feed.name / day.isoformat() / feed.file)
