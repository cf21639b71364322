"""Key tables: every value a reference can name, with the first business day it was delivered.

A reference check (``crm.ingest.checks.unknown_reference``) asks: was this customer (or
account) delivered on or before the day? Asked of ``raw.core_customers`` itself, that is
an anti-join against every daily partition: PostgreSQL plans and probes each of them, so a
day's load got slower with every day of history (1,000 customers, a day's load at day 150
vs day 10: 2.0-2.7x; one check's planning alone 16-22 ms on a fresh connection at 150
partitions, against 0.6-0.9 ms on this table; ``python -m crm.ingest.bench``).

``raw.keys__<feed>__<column>`` (``<column>`` primary key, ``first_business_date``) holds,
for each referenced column, ``min(_business_date)`` per value over the feed's raw rows:
one small table, whatever the history. The loader keeps it equal to that minimum in the
load's own transaction (``record_keys``), a reload included: a value whose first day is
reloaded without it moves to its next day in raw, or leaves the table if raw no longer
has it, exactly what the anti-join against raw would answer.

The owner creates the tables at bootstrap (``ensure_key_tables``, filling a new one from
raw) and grants the loader what it needs to maintain them.
"""

from __future__ import annotations

import datetime as dt

from psycopg import Connection, sql

from crm.feeds import Feed, Registry
from crm.ingest.tables import partition_name


def key_table_name(feed: str, column: str) -> str:
    """``keys__<feed>__<column>`` (in raw; not prefixed by the feed's name, so nothing that
    lists a feed's tables and partitions by name takes it for one of them)."""
    return f"keys__{feed}__{column}"


def key_table(feed: str, column: str) -> sql.Identifier:
    """``raw.keys__<feed>__<column>``."""
    return sql.Identifier("raw", key_table_name(feed, column))


def referenced(registry: Registry) -> list[tuple[Feed, str]]:
    """(feed, column) of every column some feed's reference names, in load order."""
    wanted = {col.reference for feed in registry.load_order() for col in feed.columns if col.reference}
    return [(f, c) for f in registry.load_order() for c in f.column_names if (f.name, c) in wanted]


def ensure_key_tables(conn: Connection, registry: Registry) -> None:
    """Create the key tables that are missing (as the owner, after the raw tables), each
    filled from what raw already holds; the loader may read and maintain them."""
    for feed, column in referenced(registry):
        table, col = key_table(feed.name, column), sql.Identifier(column)
        exists = conn.execute(
            "select to_regclass(%s)", (f"raw.{key_table_name(feed.name, column)}",)
        ).fetchone()[0]
        if exists is None:
            conn.execute(
                sql.SQL("create table {} ({} {} primary key, first_business_date date not null)").format(
                    table, col, sql.SQL(feed.column(column).pg_type)
                )
            )
            conn.execute(sql.SQL("create index on {} (first_business_date)").format(table))
            conn.execute(
                sql.SQL(
                    "insert into {} select {c}, min(_business_date) from raw.{} where {c} is not null group by {c}"
                ).format(table, sql.Identifier(feed.name), c=col)
            )
        conn.execute(sql.SQL("grant select, insert, update, delete on {} to crm_loader").format(table))


def record_keys(conn: Connection, registry: Registry, feed: Feed, day: dt.date) -> None:
    """After the day's partition of ``feed`` was replaced (same transaction): make each key
    table of ``feed`` hold the first day of every value again.

    Reads the day's partition only (no plan over every partition), except when a reload
    dropped values whose first day this was: those get their first day from raw again.
    """
    partition = sql.Identifier("raw", partition_name(feed, day))
    for ref_feed, column in referenced(registry):
        if ref_feed.name != feed.name:
            continue
        table, col = key_table(feed.name, column), sql.Identifier(column)
        gone = conn.execute(
            sql.SQL(
                "delete from {t} k where k.first_business_date = %s"
                " and not exists (select 1 from {p} p where p.{c} = k.{c}) returning k.{c}"
            ).format(t=table, p=partition, c=col),
            (day,),
        ).fetchall()
        if gone:
            conn.execute(
                sql.SQL(
                    "insert into {t} select {c}, min(_business_date) from raw.{f}"
                    " where {c} = any(%s) group by {c}"
                ).format(t=table, f=sql.Identifier(feed.name), c=col),
                ([v for (v,) in gone],),
            )
        conn.execute(
            sql.SQL(
                "insert into {t} as k select distinct {c}, %s::date from {p} where {c} is not null"
                " on conflict ({c}) do update set first_business_date = excluded.first_business_date"
                " where k.first_business_date > excluded.first_business_date"
            ).format(t=table, p=partition, c=col),
            (day,),
        )
