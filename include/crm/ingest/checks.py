"""The SQL both load paths share, written once.

A column's value rules (min, max, not-future, pattern, accepted values) are one model,
``ValueRule``, compiled two ways: ``broken_by`` flags a staged text value on the
row-by-row path (``crm.ingest.row_path``), ``constraint`` is a CHECK on the typed value
on the clean path (``crm.ingest.clean_path``). The reference test and the JSON Lines
``_extra`` value are the same SQL on both paths.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from psycopg import Connection, sql

from crm.feeds import Column, Feed, Registry
from crm.ingest.keys import key_table
from crm.ingest.rules import LOCAL_TZ, RowReason


@dataclass(frozen=True)
class ValueRule:
    """One rule of one column: ``holds`` is true for a value that keeps it, ``broken`` its
    negation for a non-null value (both SQL templates over ``{value}`` and ``{limit}``).

    ``cast`` is the type the rule compares the value as: ``text`` compares the value as
    delivered, ``numeric`` a number, a column's own type a date or timestamp.
    """

    column: Column
    reason: RowReason
    holds: str
    broken: str
    limit: sql.Composable
    cast: str

    def broken_by(self, text: sql.Composable) -> sql.Composable:
        """Row-by-row path: true when the staged text ``text`` (not null) breaks the rule."""
        value = text if self.cast == "text" else sql.SQL("{}::{}").format(text, sql.SQL(self.cast))
        return sql.SQL(self.broken).format(value=value, limit=self.limit)

    def constraint(self, typed: sql.Composable) -> sql.Composable:
        """Clean path: a CHECK expression on the column's typed value ``typed``."""
        if self.cast != self.column.pg_type:
            typed = sql.SQL("{}::{}").format(typed, sql.SQL(self.cast))
        return sql.SQL(self.holds).format(value=typed, limit=self.limit)


def range_rules(col: Column) -> list[ValueRule]:
    """``min`` and ``max``, compared as numbers."""
    lit, rules = sql.Literal, []
    if col.min is not None:
        rules.append(
            ValueRule(
                col,
                RowReason.OUT_OF_RANGE,
                "{value} >= {limit}",
                "{value} < {limit}",
                lit(col.min),
                "numeric",
            )
        )
    if col.max is not None:
        rules.append(
            ValueRule(
                col,
                RowReason.OUT_OF_RANGE,
                "{value} <= {limit}",
                "{value} > {limit}",
                lit(col.max),
                "numeric",
            )
        )
    return rules


def future_rules(col: Column, day: dt.date) -> list[ValueRule]:
    """``not_future``: before the end of the business day ``day`` (a local day for a
    timestamp with time zone)."""
    if not col.not_future:
        return []
    end = sql.Literal(day + dt.timedelta(days=1))
    if col.type == "date":
        limit: sql.Composable = end
    elif col.type == "timestamp":
        limit = sql.SQL("{}::timestamp").format(end)
    else:
        limit = sql.SQL("({}::timestamp at time zone {})").format(end, sql.Literal(LOCAL_TZ))
    return [
        ValueRule(col, RowReason.FUTURE_DATE, "{value} < {limit}", "{value} >= {limit}", limit, col.pg_type)
    ]


def text_rules(col: Column) -> list[ValueRule]:
    """``pattern`` and ``accepted``, on the value as delivered."""
    lit, rules = sql.Literal, []
    if col.pattern:
        rules.append(
            ValueRule(
                col,
                RowReason.BAD_PATTERN,
                "{value} ~ {limit}",
                "{value} !~ {limit}",
                lit(col.pattern),
                "text",
            )
        )
    if col.accepted:
        rules.append(
            ValueRule(
                col,
                RowReason.NOT_ACCEPTED,
                "{value} = any({limit})",
                "{value} <> all({limit})",
                lit(list(col.accepted)),
                "text",
            )
        )
    return rules


def unknown_reference(col: Column, registry: Registry, day: dt.date) -> sql.Composable:
    """True for a row ``s`` whose ``col`` names no row of the referenced feed loaded on or
    before ``day``. A standalone anti-join (not per row inside a CASE): PostgreSQL hashes it.

    Asked of the referenced column's key table (``crm.ingest.keys``: each value with the
    first day raw holds it), not of ``raw.<feed>``: one table instead of every daily
    partition, so the check costs the same at day 400 as at day 10.
    """
    ref_feed, ref_col = col.reference
    return sql.SQL(
        "s.{c} is not null and not exists (select 1 from {t} r where r.{rc} = s.{c} and r.first_business_date <= {d})"
    ).format(
        c=sql.Identifier(col.name),
        t=key_table(registry.feed(ref_feed).name, ref_col),
        rc=sql.Identifier(ref_col),
        d=sql.Literal(day),
    )


def jsonl_extra(feed: Feed) -> sql.Composable:
    """A JSON Lines row's ``_extra``: the keys of ``doc`` the registry does not know, null if none."""
    return sql.SQL("nullif(doc - {}::text[], '{{}}'::jsonb)").format(sql.Literal(feed.column_names))


# The ids that name a data subject (a customer and their accounts): ``crm privacy erase``
# blocks them, and the loader quarantines later rows naming one as ERASED_SUBJECT.
SUBJECT_KEYS = (("core_customers", "customer_id"), ("core_accounts", "account_id"))


def subject_columns(feed: Feed) -> list[tuple[Column, sql.Composable, str]]:
    """(column, key table, key column) of each column of ``feed`` that names a data subject:
    a subject key itself or a reference to one. The key table holds every value raw holds,
    and never an erased one (``crm privacy erase`` deletes it there)."""
    found = []
    for col in feed.columns:
        owner = (feed.name, col.name) if (feed.name, col.name) in SUBJECT_KEYS else col.reference
        if owner is not None and tuple(owner) in SUBJECT_KEYS:
            found.append((col, key_table(*owner), owner[1]))
    return found


def erased_subject_lines(
    conn: Connection, feed: Feed, table: sql.Composable, *, keys_only: bool = False
) -> sql.Composable | None:
    """A SELECT of (``_line_number``, 'ERASED_SUBJECT|column') over ``table`` for the rows
    naming an erased subject; None when nothing can match (the block list is empty: one
    cheap call per load, nothing else; or the feed names no subject).

    Set-based: only values unknown to the key table can be erased (an erased id is deleted
    from it and never loaded again), and those are hashed once each by the owner's
    ``audit.erased_values``. ``keys_only``: skip referencing columns (the clean path's
    reference check already refuses any value the key table lacks).
    """
    columns = [(c, k, kc) for c, k, kc in subject_columns(feed) if not (keys_only and c.reference)]
    if not columns or not conn.execute("select audit.any_erased()").fetchone()[0]:
        return None
    return sql.SQL(" union all ").join(
        sql.SQL(
            "select s._line_number, {flag} from {t} s where s.{c} = any(array(select audit.erased_values(array("
            "select distinct n.{c} from {t} n where n.{c} is not null"
            " and not exists (select 1 from {k} k where k.{kc} = n.{c})))))"
        ).format(
            flag=sql.Literal(f"{RowReason.ERASED_SUBJECT}|{col.name}"),
            t=table,
            c=sql.Identifier(col.name),
            k=key,
            kc=sql.Identifier(key_col),
        )
        for col, key, key_col in columns
    )
