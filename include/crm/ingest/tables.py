"""Raw and quarantine tables, derived from the feed registry.

``raw.<feed>``: the registry's columns, typed, the line as delivered (``_source_line``) and
lineage columns; partitioned by
business day (one partition per day, so reloading a day touches one partition).
``quarantine.<feed>``: rejected rows with their raw line, line number and reason.

The owner creates both (:func:`ensure_all_tables`, at bootstrap) and owns them: the loader
owns nothing another role reads. It adds a day's partition, a column the registry gained
and statistics only through the owner's checked functions ``raw.ensure_partition``,
``raw.add_feed_columns`` and ``raw.analyze_partition`` (migration 0014).
"""

from __future__ import annotations

import datetime as dt

from psycopg import Connection, sql

from crm.feeds import Feed, Registry

LINEAGE_COLUMNS: list[tuple[str, str]] = [
    ("_business_date", "date not null"),
    ("_source_file", "text not null"),
    ("_file_sha256", "text not null"),
    ("_line_number", "integer not null"),
    ("_load_id", "bigint not null"),
    ("_loaded_at", "timestamptz not null"),
    ("_extra", "jsonb"),
    # The data line as delivered (decoded, without its line end): every source value as
    # text, beside the typed columns. Null in partitions loaded before it existed.
    ("_source_line", "text"),
]


def partition_name(feed: Feed, day: dt.date) -> str:
    return f"{feed.name}_p{day:%Y%m%d}"


def ensure_feed_tables(conn: Connection, feed: Feed) -> None:
    """Create the feed's raw and quarantine tables if missing (idempotent). As the owner."""
    cols = [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type)) for c in feed.columns]
    cols += [sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in LINEAGE_COLUMNS]
    conn.execute(
        sql.SQL("create table if not exists raw.{} ({}) partition by range (_business_date)").format(
            sql.Identifier(feed.name), sql.SQL(", ").join(cols)
        )
    )
    add_new_columns(conn, feed)
    # Raw is written once a day, in bulk, and read by hash joins (reference checks, dbt):
    # no index, except where the registry asks for one (a key that the reference checks
    # of many small files look up; a new partition gets it when it is attached).
    conn.execute(sql.SQL("drop index if exists raw.{}").format(sql.Identifier(f"{feed.name}_key")))
    for col in feed.columns:
        if col.index:
            conn.execute(
                sql.SQL("create index if not exists {} on raw.{} ({})").format(
                    sql.Identifier(f"{feed.name}_{col.name}"),
                    sql.Identifier(feed.name),
                    sql.Identifier(col.name),
                )
            )
    conn.execute(
        sql.SQL(
            """create table if not exists quarantine.{} (
                _business_date date not null,
                _source_file text not null,
                _file_sha256 text not null,
                _line_number integer not null,
                _load_id bigint not null,
                _loaded_at timestamptz not null,
                reason text not null,
                column_name text,
                detail text,
                raw_line text
            )"""
        ).format(sql.Identifier(feed.name))
    )
    conn.execute(
        sql.SQL("create index if not exists {} on quarantine.{} (_business_date)").format(
            sql.Identifier(f"{feed.name}_day"), sql.Identifier(feed.name)
        )
    )


def raw_columns(conn: Connection, feed: Feed) -> list[tuple[str, str, bool]]:
    """``raw.<feed>``'s columns as they are in the warehouse, in order: name, type, not null."""
    return conn.execute(
        "select attname, format_type(atttypid, atttypmod), attnotnull from pg_attribute"
        " where attrelid = %s::regclass and attnum > 0 and not attisdropped order by attnum",
        (f"raw.{feed.name}",),
    ).fetchall()


def add_new_columns(conn: Connection, feed: Feed) -> list[str]:
    """Add the registry's columns that ``raw.<feed>`` lacks (a feed that gained a column
    after its table was created), and nullable lineage columns added since (``_source_line``);
    returns their names.

    Earlier days' partitions read the new column as null: their files did not have it
    (rows that carried it as an unregistered column keep it in ``_extra``). A nullable
    column without a default is a catalogue change, not a rewrite; the ALTER runs only
    when a column is missing, so daily loads take no lock on the parent table.
    """
    present = {name for name, _, _ in raw_columns(conn, feed)}
    wanted = [(c.name, c.pg_type) for c in feed.columns] + [
        (name, pg_type) for name, pg_type in LINEAGE_COLUMNS if "not null" not in pg_type
    ]
    missing = [(name, pg_type) for name, pg_type in wanted if name not in present]
    if missing:
        # The owner's function: the loader cannot alter raw itself.
        conn.execute(
            "select raw.add_feed_columns(%s, %s, %s)",
            (feed.name, [name for name, _ in missing], [pg_type for _, pg_type in missing]),
        )
    return [name for name, _ in missing]


def check_feed_tables(conn: Connection, feed: Feed) -> None:
    """The loader's check before a load: ``raw.<feed>`` exists (the owner creates it at
    bootstrap) and has the registry's columns (added through the owner's function if not)."""
    if conn.execute("select to_regclass(%s)", (f"raw.{feed.name}",)).fetchone()[0] is None:
        raise LookupError(
            f"raw.{feed.name} does not exist: the warehouse owner creates the registry's tables"
            " (crm warehouse init)"
        )
    add_new_columns(conn, feed)


def ensure_partition(conn: Connection, feed: Feed, day: dt.date) -> sql.Composed:
    """Create the day's partition if missing (the owner's function ``raw.ensure_partition``,
    which grants the loader insert and truncate on it); return its qualified name."""
    part = conn.execute("select raw.ensure_partition(%s, %s)", (feed.name, day)).fetchone()[0]
    return sql.Identifier("raw", part)


def ensure_all_tables(conn: Connection, registry: Registry) -> None:
    from crm.ingest.keys import ensure_key_tables

    for feed in registry.load_order():
        ensure_feed_tables(conn, feed)
    ensure_key_tables(conn, registry)
