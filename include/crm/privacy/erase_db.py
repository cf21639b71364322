"""The database side of an erasure: every table of every schema, each by the role that owns it.

A table's rows that belong to the subject (a column naming the customer or one of their
accounts: ``customer_id``, ``account_id``, or a registry column referencing either) are
deleted. Any other text or JSON value that still carries one of those ids (a referrer in
another customer's row, its ``_source_line``, a quality result's sample of values) has the
id cut out of it, or becomes null when it is nothing else. A quarantined line that carries
an id is deleted whole: it may not parse, so whose line it is cannot be told.

Ownership decides the connection: the owner's tables (raw, quarantine, key tables, ml
scores, dq, audit) through the owner URL, dbt's relations (staging, intermediate, marts, rm,
snapshots) as ``crm_transformer``, which owns them. No role gets a new privilege.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from psycopg import Connection, sql

from crm.feeds import Registry
from crm.ingest.checks import SUBJECT_KEYS, subject_columns

log = logging.getLogger(__name__)

# Never touched: the key, the erasure audit itself (it holds pseudonyms only), the loader's
# scratch schema (dropped at the end of each load).
SKIPPED_TABLES = {("private", "pii_salt"), ("audit", "erasures"), ("audit", "erased_subjects")}
SKIPPED_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast", "load_work")
TEXT_TYPES = {"text", "character varying", "json", "jsonb"}
# Ids are letters and digits only (the registry's patterns), so they are safe in a regex.
ID_SHAPE = re.compile(r"[A-Z][0-9]{6,20}")


class ErasureError(Exception):
    """An erasure that cannot be done as asked; the message never names the customer."""


@dataclass
class Table:
    schema: str
    name: str
    owner: str
    columns: dict[str, tuple[str, bool]]  # name -> (data type, not null)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.name)


@dataclass
class TableCounts:
    deleted: dict[str, int] = field(default_factory=dict)
    anonymised: dict[str, int] = field(default_factory=dict)

    def add(self, other: TableCounts) -> None:
        for mine, theirs in ((self.deleted, other.deleted), (self.anonymised, other.anonymised)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v

    @property
    def total(self) -> int:
        return sum(self.deleted.values()) + sum(self.anonymised.values())


def subject_column_names(registry: Registry) -> set[str]:
    """Column names that name a subject in any table: the subject keys and every registry
    column referencing one (dbt keeps these names downstream)."""
    names = {col for _, col in SUBJECT_KEYS}
    for feed in registry.load_order():
        names |= {col.name for col, _, _ in subject_columns(feed)}
    return names


def list_tables(conn: Connection) -> list[Table]:
    """Every table (partitioned parents, not their partitions) of every user schema."""
    rows = conn.execute(
        """
        select n.nspname, c.relname, pg_get_userbyid(c.relowner), a.attname,
               format_type(a.atttypid, null), a.attnotnull
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        where c.relkind in ('r', 'p') and not c.relispartition
          and n.nspname <> all(%s) and n.nspname not like 'pg_temp%%' and n.nspname not like 'pg_toast%%'
        order by n.nspname, c.relname, a.attnum
        """,
        (list(SKIPPED_SCHEMAS),),
    ).fetchall()
    tables: dict[tuple[str, str], Table] = {}
    for schema, name, owner, col, col_type, not_null in rows:
        if (schema, name) in SKIPPED_TABLES:
            continue
        table = tables.setdefault((schema, name), Table(schema, name, owner, {}))
        table.columns[col] = (col_type, not_null)
    return list(tables.values())


def accounts_of(conn: Connection, tables: Iterable[Table], customer_id: str) -> set[str]:
    """The customer's account ids, from every table this role reads that pairs the two."""
    found: set[str] = set()
    for table in tables:
        if {"customer_id", "account_id"} <= table.columns.keys():
            rows = conn.execute(
                sql.SQL("select distinct account_id::text from {} where customer_id::text = %s").format(
                    table.ident
                ),
                (customer_id,),
            ).fetchall()
            found |= {r[0] for r in rows if r[0]}
    return found


def _pattern(ids: Iterable[str]) -> str:
    ids = sorted(set(ids))
    for value in ids:
        if not ID_SHAPE.fullmatch(value):
            raise ErasureError("an id to erase is not letters and digits as the registry's patterns say")
    return "(" + "|".join(ids) + ")"


def erase_table(conn: Connection, table: Table, ids: set[str], subject_names: set[str]) -> TableCounts:
    """Delete the subject's rows of ``table``, then cut the ids out of every other text value."""
    counts = TableCounts()
    pattern = _pattern(ids)
    ident, lit = sql.Identifier, sql.Literal
    keys = [c for c in table.columns if c in subject_names]
    texts = [c for c, (t, _) in table.columns.items() if t in TEXT_TYPES]
    owned = [sql.SQL("{}::text = any({})").format(ident(c), lit(sorted(ids))) for c in keys]
    if table.schema == "quarantine":  # a bad line carrying an id: whose it is cannot be told
        owned += [sql.SQL("{}::text ~ {}").format(ident(c), lit(pattern)) for c in texts]
    if owned:
        deleted = conn.execute(
            sql.SQL("delete from {} where {}").format(table.ident, sql.SQL(" or ").join(owned))
        ).rowcount
        if deleted:
            counts.deleted[table.label] = deleted
    if texts:
        whole = lit(f"^{pattern}$")
        sets = []
        for c in texts:
            col_type, not_null = table.columns[c]
            empty = sql.SQL("''") if col_type not in ("json", "jsonb") else sql.SQL("'\"\"'")
            blank = empty if not_null else sql.SQL("null")
            cut = sql.SQL("regexp_replace({c}::text, {p}, '', 'g')::{t}").format(
                c=ident(c), p=lit(pattern), t=sql.SQL(col_type)
            )
            sets.append(
                sql.SQL(
                    "{c} = case when {c}::text ~ {whole} then {blank} when {c}::text ~ {p} then {cut} else {c} end"
                ).format(c=ident(c), whole=whole, blank=blank, p=lit(pattern), cut=cut)
            )
        carries = sql.SQL(" or ").join(sql.SQL("{}::text ~ {}").format(ident(c), lit(pattern)) for c in texts)
        anonymised = conn.execute(
            sql.SQL("update {} set {} where {}").format(table.ident, sql.SQL(", ").join(sets), carries)
        ).rowcount
        if anonymised:
            counts.anonymised[table.label] = anonymised
    if table.label in counts.deleted or table.label in counts.anonymised:
        # Fresh statistics: the old ones may keep the ids as common values or histogram bounds.
        conn.execute(sql.SQL("analyze {}").format(table.ident))
    return counts


def erase_tables(
    conn: Connection, tables: list[Table], ids: set[str], subject_names: set[str]
) -> TableCounts:
    """``erase_table`` for each of ``tables`` (all owned by ``conn``'s role), in its transaction."""
    counts = TableCounts()
    for table in tables:
        counts.add(erase_table(conn, table, ids, subject_names))
    return counts


def pseudonym(conn: Connection, value: str) -> str:
    """``private.pseudonym(value)``, as the owner."""
    return conn.execute("select private.pseudonym(%s)", (value,)).fetchone()[0]


def already_erased(conn: Connection, subject_hash: str) -> bool:
    return (
        conn.execute(
            "select 1 from audit.erased_subjects where subject_hash = %s", (subject_hash,)
        ).fetchone()
        is not None
    )


def record_erasure(
    conn: Connection, subject_hash: str, account_ids: set[str], *, reason: str, os_user: str, already: bool
) -> int:
    """The audit row and the block list entries (owner, in the caller's transaction); the
    erasure's id. The block list holds the customer's and their accounts' pseudonyms."""
    erasure_id = conn.execute(
        "insert into audit.erasures (subject_hash, os_user, reason, already_erased)"
        " values (%s, %s, %s, %s) returning erasure_id",
        (subject_hash, os_user, reason, already),
    ).fetchone()[0]
    conn.execute(
        "insert into audit.erased_subjects (subject_hash, kind, erasure_id) values (%s, 'customer', %s)"
        " on conflict (subject_hash) do nothing",
        (subject_hash, erasure_id),
    )
    if account_ids:
        conn.execute(
            "insert into audit.erased_subjects (subject_hash, kind, erasure_id)"
            " select private.pseudonym(a), 'account', %s from unnest(%s::text[]) as a"
            " on conflict (subject_hash) do nothing",
            (erasure_id, sorted(account_ids)),
        )
    return erasure_id


def finish_erasure(conn: Connection, erasure_id: int, counts: TableCounts, files: dict[str, int]) -> None:
    """Write the counts of every table and file into the audit row."""
    from psycopg.types.json import Jsonb

    conn.execute(
        "update audit.erasures set row_counts = %s, file_counts = %s where erasure_id = %s",
        (Jsonb({"deleted": counts.deleted, "anonymised": counts.anonymised}), Jsonb(files), erasure_id),
    )
