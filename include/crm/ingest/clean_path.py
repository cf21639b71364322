"""The clean-file path: one typed ``COPY`` straight into the day's new partition.

Most days every line of a feed's file is good. For those files the loader does not
stage text and check it row by row; PostgreSQL checks while it copies:

1. ``COPY`` into a new table with the columns of ``raw.<feed>``, typed, whose
   constraints are the registry's row rules (``NOT NULL`` for required, ``CHECK`` for
   min/max, not-future and any pattern Python cannot check exactly).
2. While PostgreSQL parses one block, Python checks the next block of whole lines with
   one regular expression (``crm.ingest.clean_lines``): the header's field count, ISO
   date/timestamp shapes (PostgreSQL's date input would also take an ambiguous
   ``01/02/2026``), accepted values and simple patterns. It prefixes each line with its
   line number.
3. One query for what constraints cannot say: no repeated business key, every
   reference known.
4. The load's constants (source file, SHA-256, load id, loaded-at) are added as column
   defaults after the COPY: PostgreSQL keeps such a value once in the catalogue, not in
   every row (a partition holds one load). The table replaces the day's partition.

Any broken rule raises (``NotClean`` or the constraint's own error); the caller rolls
back to its savepoint and takes the row-by-row path, which quarantines exactly the bad
lines with their reasons. Both paths apply the same rules, so a file's outcome does not
depend on the path that loaded it.
"""

from __future__ import annotations

import codecs
import datetime as dt
import logging
import time
from pathlib import Path
from queue import Queue

import psycopg
from psycopg import Connection, sql
from psycopg.copy import QueuedLibpqWriter

from crm.feeds import Column, Feed, Registry
from crm.ingest.attempt import Attempt
from crm.ingest.checks import (
    erased_subject_lines,
    future_rules,
    jsonl_extra,
    range_rules,
    text_rules,
    unknown_reference,
)
from crm.ingest.clean_lines import LineChecker, NotClean, numbered, python_field, source_texts
from crm.ingest.keys import record_keys
from crm.ingest.lines import LineReader
from crm.ingest.rules import PG_ENCODINGS, SHAPES, RowReason, anchored, deep_json_in
from crm.ingest.tables import raw_columns

log = logging.getLogger(__name__)


class _QueuedWriter(QueuedLibpqWriter):
    """A writer thread sends to the server while the main thread checks the next block
    (the socket waits release the GIL); at most 64 chunks of 128 KiB wait in its queue."""

    def __init__(self, cursor) -> None:
        super().__init__(cursor)
        self._queue = Queue(maxsize=64)


def _rule_checks(col: Column, day: dt.date, delimiter: str | None) -> list[sql.Composable]:
    """The registry's row rules for one column as CHECK expressions on its typed value
    (pattern and accepted values only where Python does not check them, ``python_field``)."""
    rules = []
    if delimiter is None or python_field(col, delimiter) is None:
        for rule in text_rules(col):
            if col.type != "text":
                what = "pattern" if rule.reason == RowReason.BAD_PATTERN else "accepted values"
                raise NotClean(f"{what} on the non-text column {col.name}")
            rules.append(rule)
    rules += range_rules(col) + future_rules(col, day)
    return [rule.constraint(sql.Identifier(col.name)) for rule in rules]


def key_and_reference_tests(
    feed: Feed, registry: Registry, table: sql.Composable, day: dt.date
) -> list[sql.Composable]:
    """Boolean SQL tests on ``table`` (the day's rows of ``feed``), true when broken: a
    business key repeats; a reference is not in raw on or before ``day``."""
    key = sql.SQL(", ").join(sql.Identifier(k) for k in feed.key)
    tests: list[sql.Composable] = [
        sql.SQL("(select count(*) - count(distinct ({})) from {}) > 0").format(key, table)
    ]
    # A count, not EXISTS: "first row fast" plans a nested loop over the file.
    tests += [
        sql.SQL("(select count(*) from {} s where {}) > 0").format(
            table, unknown_reference(col, registry, day)
        )
        for col in feed.columns
        if col.reference
    ]
    return tests


class NewPartition:
    """The table that becomes the day's partition once every rule holds.

    It has the parent's columns, typed, with the row rules as constraints, except the
    load's constants (source file, SHA-256, load id, loaded-at): ``swap`` adds those with
    a default, which PostgreSQL keeps once in the catalogue (attmissingval) instead of in
    every row; a partition holds one load, so they are constants of the partition.
    """

    def __init__(
        self,
        conn: Connection,
        feed: Feed,
        registry: Registry,
        day: dt.date,
        *,
        path: Path,
        sha256: str,
        load_id: int,
        loaded_at: dt.datetime,
        python_checked: bool,
    ) -> None:
        self.conn, self.feed, self.registry, self.day = conn, feed, registry, day
        self.started = time.perf_counter()
        # In the loader's own schema (load_work): the owner's raw.adopt_partition checks it
        # and makes it the day's partition.
        self.load_id = load_id
        self.table = sql.Identifier("load_work", f"_load_{load_id}")
        lit = sql.Literal
        self.per_load = {
            "_source_file": lit(str(path)),
            "_file_sha256": lit(sha256),
            "_load_id": lit(load_id),
            "_loaded_at": lit(loaded_at),
        }
        self.required = sorted(c.name for c in feed.columns if c.required)
        delimiter = feed.delimiter if python_checked else None
        self.checks = [
            (f"_rule_{i}", expr)
            for i, expr in enumerate(e for col in feed.columns for e in _rule_checks(col, day, delimiter))
        ]
        self.parent = raw_columns(conn, feed)
        ident = sql.Identifier
        definitions = [
            sql.SQL("{} {}{}{}").format(
                ident(name),
                sql.SQL(pg_type),
                sql.SQL(" not null" if not_null or name in self.required else ""),
                sql.SQL(" default {}").format(lit(day)) if name == "_business_date" else sql.SQL(""),
            )
            for name, pg_type, not_null in self.parent
            if name not in self.per_load
        ]
        definitions.append(
            sql.SQL("constraint _day check (_business_date >= {} and _business_date < {})").format(
                lit(day), lit(day + dt.timedelta(days=1))
            )
        )
        definitions += [sql.SQL("constraint {} check ({})").format(ident(n), e) for n, e in self.checks]
        conn.execute(sql.SQL("create table {} ({})").format(self.table, sql.SQL(", ").join(definitions)))

    def check_keys_and_references(self) -> None:
        """What a constraint cannot say: the business key does not repeat, references resolve."""
        tests = key_and_reference_tests(self.feed, self.registry, self.table, self.day)
        erased = erased_subject_lines(self.conn, self.feed, self.table, keys_only=True)
        if erased is not None:  # the row path quarantines them without their text
            tests.append(sql.SQL("exists ({})").format(erased))
        broken = self.conn.execute(sql.SQL("select {}").format(sql.SQL(", ").join(tests))).fetchone()
        if any(broken):
            raise NotClean("a repeated business key or an unknown reference")

    def finish(self, rows: int) -> None:
        """After the COPY: check keys and references, swap, log each phase's seconds."""
        clock = [self.started, time.perf_counter()]
        self.check_keys_and_references()
        clock.append(time.perf_counter())
        self.swap()
        clock.append(time.perf_counter())
        phases = ("checked_copy", "key_and_references", "swap")
        log.info(
            "feed=%s day=%s clean COPY of %d rows: %s",
            self.feed.name,
            self.day,
            rows,
            ", ".join(f"{p} {b - a:.3f}s" for p, a, b in zip(phases, clock[:-1], clock[1:], strict=True)),
        )

    def swap(self) -> None:
        """Add the load's constants, drop the load-time rules, replace the day's partition."""
        ident = sql.Identifier
        types = {name: pg_type for name, pg_type, _ in self.parent}
        alter = sql.SQL("alter table {} {}").format
        self.conn.execute(
            alter(
                self.table,
                sql.SQL(", ").join(
                    sql.SQL("add column {} {} not null default {}").format(ident(n), sql.SQL(types[n]), v)
                    for n, v in self.per_load.items()
                ),
            )
        )
        self.conn.execute(
            alter(
                self.table,
                sql.SQL(", ").join(
                    [sql.SQL("drop constraint {}").format(ident(n)) for n, _ in self.checks]
                    + [sql.SQL("alter column {} drop not null").format(ident(c)) for c in self.required]
                    + [
                        sql.SQL("alter column {} drop default").format(ident(c))
                        for c in ["_business_date", *self.per_load]
                    ]
                ),
            )
        )
        # The owner's function replaces the day's partition with this table (checked, then
        # owned by the owner): the loader cannot drop, rename or attach in raw itself.
        self.conn.execute("select raw.adopt_partition(%s, %s, %s)", (self.feed.name, self.day, self.load_id))
        record_keys(self.conn, self.registry, self.feed, self.day)


def _pg_encoding(encoding: str) -> str:
    pg_encoding = PG_ENCODINGS.get(codecs.lookup(encoding).name)
    if pg_encoding is None:
        raise NotClean(f"no COPY encoding for {encoding}")
    return pg_encoding


def load_clean_csv(
    new: NewPartition, path: Path, *, header: list[str], encoding: str, bom: bool, crlf: bool, data_lines: int
) -> int:
    """Load a clean CSV file into ``new`` (built with ``python_checked=True``), which then
    replaces the day's partition; rows loaded.

    Call inside a savepoint: NotClean or a constraint error means roll back to it and
    load row by row.
    """
    conn, feed = new.conn, new.feed
    if sorted(header) != sorted(feed.column_names):
        raise NotClean("the header's columns differ from the registry's")
    pg_encoding = _pg_encoding(encoding)
    lit = sql.Literal
    columns = sql.SQL(", ").join(sql.Identifier(h) for h in header)
    copy_sql = sql.SQL(
        "copy {} (_line_number, {}{}) from stdin (format csv, delimiter {}, quote {}, null '',"
        " force_null ({}), encoding {})"
    ).format(
        new.table,
        sql.SQL("_source_line, " if feed.source_line else ""),
        columns,
        lit(feed.delimiter),
        lit(feed.quotechar),
        columns,
        lit(pg_encoding),
    )
    # Each block is checked, numbered and handed to COPY: PostgreSQL parses one block while
    # Python checks the next (a bad line stops the COPY at once). Python prefixes each line
    # with its number, cheaper than a sequence default evaluated by PostgreSQL per row.
    # Each line also goes in whole, quoted, as its _source_line (quotes doubled if any).
    checker = LineChecker(feed, header, encoding, first_line=2 if feed.header else 1)
    separator, quote = feed.delimiter.encode(), feed.quotechar.encode()
    with conn.cursor() as cur:
        with cur.copy(copy_sql, writer=_QueuedWriter(cur)) as copy:
            reader = LineReader(path, max_line=feed.max_line_bytes, skip_bom=bom)
            for i, block in enumerate(reader.blocks()):
                if i == 0 and feed.header:
                    block = block[block.find(b"\n") + 1 :]
                first = checker.line
                checker.check(block)
                lines = block.split(b"\n")
                lines.pop()  # after the last line end
                sources = None
                if feed.source_line:
                    sources = source_texts(lines, crlf, quote if quote in block else b"")
                copy.write(numbered(lines, first, separator, sources, quote))
        loaded = cur.rowcount
    if loaded != data_lines:
        raise NotClean(f"COPY read {loaded} rows from {data_lines} lines (a quoted line break?)")
    new.finish(loaded)
    return loaded


def load_clean_jsonl(
    new: NewPartition, path: Path, *, encoding: str, bom: bool, crlf: bool, data_lines: int
) -> int:
    """Load a clean JSON Lines file into ``new`` (built with ``python_checked=False``), which
    then replaces the day's partition; rows loaded.

    PostgreSQL parses every line as jsonb in one ``COPY`` (a temporary table: no WAL),
    checks that each is an object with ISO-shaped dates, and casts the registered keys
    into the new partition, whose constraints hold the row rules. Unregistered keys go
    to ``_extra``, as on the row-by-row path.
    """
    conn, feed = new.conn, new.feed
    pg_encoding = _pg_encoding(encoding)
    conn.execute("create temp table _clean_doc (_line_number integer, source text, doc jsonb) on commit drop")
    with conn.cursor() as cur:
        with cur.copy(
            sql.SQL("copy _clean_doc (_line_number, {}doc) from stdin (encoding {})").format(
                sql.SQL("source, " if feed.source_line else ""), sql.Literal(pg_encoding)
            ),
            writer=_QueuedWriter(cur),
        ) as copy:
            line = 1
            for block in LineReader(path, max_line=feed.max_line_bytes, skip_bom=bom).blocks():
                if deep_json_in(block, encoding):
                    raise NotClean("a JSON line nests too deep")
                # COPY text format: a backslash escapes, a tab separates, a carriage return
                # ends a line. JSON has neither inside a value, but allows both between tokens.
                block = block.replace(b"\\", b"\\\\")
                if b"\t" in block:
                    block = block.replace(b"\t", b"\\t")
                lines = block.split(b"\n")
                lines.pop()
                docs = source_texts(lines, crlf)
                if b"\r" in block:
                    docs = [doc.replace(b"\r", b"\\r") for doc in docs]
                copy.write(numbered(docs, line, b"\t", docs if feed.source_line else None))
                line += len(lines)
        loaded = cur.rowcount
    if loaded != data_lines:
        raise NotClean(f"COPY read {loaded} rows from {data_lines} lines")
    ident, lit = sql.Identifier, sql.Literal
    value = {c.name: sql.SQL("nullif(doc ->> {}, '')").format(lit(c.name)) for c in feed.columns}
    odd = [sql.SQL("jsonb_typeof(doc) <> 'object'")] + [
        sql.SQL("{} !~ {}").format(value[c.name], lit(anchored(SHAPES[c.type])))
        for c in feed.columns
        if c.type in SHAPES
    ]
    if conn.execute(
        sql.SQL("select exists (select 1 from _clean_doc where {})").format(sql.SQL(" or ").join(odd))
    ).fetchone()[0]:
        raise NotClean("a line is not a JSON object or a date/timestamp is not ISO-shaped")
    conn.execute(
        sql.SQL(
            "insert into {} ({}, _line_number, _source_line, _extra)"
            " select {}, _line_number, source, {} from _clean_doc"
        ).format(
            new.table,
            sql.SQL(", ").join(ident(c.name) for c in feed.columns),
            sql.SQL(", ").join(
                sql.SQL("{}::{}").format(value[c.name], sql.SQL(c.pg_type)) for c in feed.columns
            ),
            jsonl_extra(feed),
        )
    )
    new.finish(loaded)
    return loaded


def load_clean(attempt: Attempt, header: list[str]) -> int | None:
    """Rows loaded by the clean-file path, None if the file needs the row-by-row path
    (everything the attempt did is rolled back to a savepoint)."""
    conn, feed, day, path, facts = attempt.conn, attempt.feed, attempt.day, attempt.path, attempt.facts
    if facts.odd_lines:
        return None
    file = {"encoding": facts.encoding, "bom": facts.bom, "crlf": facts.crlf, "data_lines": facts.data_lines}
    try:
        with conn.transaction():
            new = NewPartition(
                conn,
                feed,
                attempt.registry,
                day,
                path=path,
                sha256=facts.sha256,
                load_id=attempt.load_id,
                loaded_at=attempt.started,
                python_checked=feed.format == "csv",  # JSON Lines: every rule in PostgreSQL
            )
            if feed.format == "csv":
                return load_clean_csv(new, path, header=header, **file)
            return load_clean_jsonl(new, path, **file)
    # ProgramLimitExceeded: JSON nested past PostgreSQL's stack depth, say (StatementTooComplex).
    except (
        NotClean,
        psycopg.errors.DataError,
        psycopg.errors.IntegrityError,
        psycopg.errors.ProgramLimitExceeded,
    ) as why:
        log.info("feed=%s day=%s file=%s: loading row by row (%s)", feed.name, day, path, str(why).strip())
        return None
