"""Publish a business day to BI once its mart gate passed (write-audit-publish).

The marts are built and tested in place; a row-level security policy on every day-grained
mart (dbt post-hook ``bi_sees_published_days``) shows ``crm_bi_reader`` only the days in
``dq.published_days``. Publishing is one row: no copy, no swap, whatever the bank's size.
"""

from __future__ import annotations

import datetime as dt

from crm.settings import Settings


def publish(day: dt.date, pipeline_run_id: str | None = None, settings: Settings | None = None) -> None:
    """Make ``day`` (and, for monthly marts, a month it completes) visible to BI."""
    from crm.warehouse import connect

    with connect("crm_transformer", settings=settings) as conn:
        conn.execute(
            "insert into dq.published_days (business_date, pipeline_run_id) values (%s, %s)"
            " on conflict (business_date) do update set published_at = clock_timestamp(),"
            " pipeline_run_id = excluded.pipeline_run_id",
            (day, pipeline_run_id),
        )


def published_through(settings: Settings | None = None) -> dt.date | None:
    from crm.warehouse import connect

    with connect("crm_transformer", settings=settings) as conn:
        return conn.execute("select dq.published_through()").fetchone()[0]
