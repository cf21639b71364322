"""The row-by-row path: stage the file as text, flag each bad line in SQL, load the rest.

The file's lines are staged as text (``crm.ingest.stage``); one CASE per row gives the
first rule it breaks, in the registry's order, then anti-joins flag unknown references
and repeated keys. Only the bad lines are materialised (``_bad``: line, reason); the
clean rows go straight into the day's partition, typed, and the bad ones, with their
reason and raw line, into ``quarantine.<feed>``.
"""

from __future__ import annotations

import datetime as dt

from psycopg import Connection, sql

from crm.feeds import Column, Feed, Registry
from crm.ingest.attempt import Attempt
from crm.ingest.checks import erased_subject_lines, future_rules, range_rules, text_rules, unknown_reference
from crm.ingest.keys import record_keys
from crm.ingest.rules import SHAPES, RowReason, anchored
from crm.ingest.stage import Quarantined, decoded_lines, stage_csv, stage_jsonl
from crm.ingest.tables import LINEAGE_COLUMNS, ensure_partition


def _text_checks(
    col: Column, ref: sql.Composable, day: dt.date, valid_fn: sql.Composable
) -> list[tuple[sql.Composable, str]]:
    """(condition that flags a bad value, reason) in rule order, for a non-null value."""
    checks: list[tuple[sql.Composable, str]] = []
    lit = sql.Literal
    if col.type in ("int", "bigint", "numeric"):
        # The shape first: PostgreSQL 16 reads 0x10, 0o17, 0b1, 1_000, NaN and Infinity too.
        checks.append((sql.SQL("{} !~ {}").format(ref, lit(anchored(SHAPES[col.type]))), "BAD_TYPE"))
        checks.append((sql.SQL("not {}({}, 'numeric')").format(valid_fn, ref), "BAD_TYPE"))
        checks += [(rule.broken_by(ref), rule.reason) for rule in range_rules(col)]
        if col.type != "numeric":
            checks.append((sql.SQL("not {}({}, {})").format(valid_fn, ref, lit(col.pg_type)), "BAD_TYPE"))
    elif col.type in ("date", "timestamp", "timestamptz"):
        checks.append(
            (
                sql.SQL("({} !~ {} or not {}({}, {}))").format(
                    ref, lit(anchored(SHAPES[col.type])), valid_fn, ref, lit(col.pg_type)
                ),
                "BAD_TYPE",
            )
        )
        checks += [(rule.broken_by(ref), rule.reason) for rule in future_rules(col, day)]
    elif col.type == "boolean":
        checks.append((sql.SQL("not {}({}, 'boolean')").format(valid_fn, ref), "BAD_TYPE"))
    checks += [(rule.broken_by(ref), rule.reason) for rule in text_rules(col)]
    return checks


def _reason_case(feed: Feed, present: set[str], day: dt.date, server_version: int) -> sql.Composable:
    """A CASE giving 'REASON|column' for the first broken rule of a row, null if clean."""
    # PostgreSQL 16 checks input without raising; older servers use the migration's fallback.
    valid_fn = sql.SQL("pg_input_is_valid" if server_version >= 160000 else "audit.is_valid_input")
    whens: list[sql.Composable] = []
    for col in feed.columns:
        ref = sql.Identifier("s", col.name) if col.name in present else sql.SQL("null::text")
        flag = lambda reason, c=col: sql.Literal(f"{reason}|{c.name}")  # noqa: E731
        if col.required:
            whens.append(sql.SQL("when {} is null then {}").format(ref, flag("MISSING_REQUIRED")))
        for cond, reason in _text_checks(col, ref, day, valid_fn):
            whens.append(sql.SQL("when {} is not null and {} then {}").format(ref, cond, flag(reason)))
    return sql.SQL("case {} end").format(sql.SQL(" ").join(whens))


def _reference_checks(
    feed: Feed, present: set[str], day: dt.date, registry: Registry, stage: sql.Identifier
) -> list[sql.Composable]:
    """One INSERT INTO _bad per referencing column, for rows that passed the value rules.

    Written as standalone anti-joins (not inside the CASE) so PostgreSQL can hash them
    instead of probing the referenced table once per row.
    """
    return [
        sql.SQL(
            "insert into _bad select s._line_number, {flag} from {stage} s where {unknown}"
            " and not exists (select 1 from _bad b where b._line_number = s._line_number)"
        ).format(
            flag=sql.Literal(f"UNKNOWN_REFERENCE|{col.name}"),
            stage=stage,
            unknown=unknown_reference(col, registry, day),
        )
        for col in feed.columns
        if col.reference is not None and col.name in present
    ]


def _typed(col: Column, present: set[str]) -> sql.Composable:
    if col.name not in present:
        return sql.SQL("null::{}").format(sql.SQL(col.pg_type))
    if col.type == "text":
        return sql.Identifier(col.name)
    return sql.SQL("{}::{}").format(sql.Identifier(col.name), sql.SQL(col.pg_type))


def _csv_extra(extra_cols: list[str]) -> sql.Composable:
    """A CSV row's ``_extra``: the columns the registry does not know, null if all are empty."""
    if not extra_cols:
        return sql.SQL("null::jsonb")
    return sql.SQL("nullif(jsonb_strip_nulls(jsonb_build_object({})), '{{}}'::jsonb)").format(
        sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(c)) for c in extra_cols)
    )


def load_rows(
    attempt: Attempt, header: list[str], quarantined: list[Quarantined], warnings: list[str]
) -> int:
    """The row-by-row path: stage text, flag each bad line with its reason, load the rest.

    Rows loaded are returned; bad lines are appended to ``quarantined`` and written to
    ``quarantine.<feed>``; what the load tolerated is appended to ``warnings``.
    """
    conn, feed, day, path, facts = attempt.conn, attempt.feed, attempt.day, attempt.path, attempt.facts
    partition = ensure_partition(conn, feed, day)
    # An unlogged work table (not a temp one): shared buffers, parallel rule checks.
    # Created and dropped inside this transaction, so a crash leaves nothing behind; in the
    # loader's own schema load_work, which no other role can use.
    stage = sql.Identifier("load_work", f"_stage_{attempt.load_id}")
    # Replace the day: one copy, whatever ran before (re-run, re-delivery, crash).
    conn.execute(sql.SQL("truncate {}").format(partition))
    if feed.format == "csv":
        stage_csv(attempt, stage, header, quarantined)
        extra_cols = [h for h in header if h not in feed.column_names]
        if extra_cols:
            warnings.append(f"SCHEMA_EXTRA_COLUMN: kept {', '.join(extra_cols)} in _extra")
        extra_expr = _csv_extra(extra_cols)
    else:
        header, _ = stage_jsonl(attempt, stage, quarantined)
        extra_expr = sql.SQL("_extra_doc")
    present = set(header)
    _flag_bad_rows(conn, feed, attempt.registry, day, present, stage)
    target_cols = [sql.Identifier(c) for c in [*feed.column_names, *(n for n, _ in LINEAGE_COLUMNS)]]
    values = [_typed(c, present) for c in feed.columns] + [
        sql.Literal(day),
        sql.Literal(str(path)),
        sql.Literal(facts.sha256),
        sql.Identifier("_line_number"),
        sql.Literal(attempt.load_id),
        sql.Literal(attempt.started),
        extra_expr,
        sql.SQL("_source_line" if feed.source_line else "null"),
    ]
    loaded = conn.execute(
        sql.SQL(
            "insert into {} ({}) select {} from {} s"
            " where not exists (select 1 from _bad b where b._line_number = s._line_number)"
        ).format(partition, sql.SQL(", ").join(target_cols), sql.SQL(", ").join(values), stage)
    ).rowcount
    record_keys(conn, attempt.registry, feed, day)
    _quarantine(attempt, quarantined)
    conn.execute(sql.SQL("drop table {}").format(stage))
    return loaded


def _flag_bad_rows(
    conn: Connection, feed: Feed, registry: Registry, day: dt.date, present: set[str], stage: sql.Identifier
) -> None:
    """``_bad`` (line, 'REASON|column'): each staged row that breaks a rule, with the first it breaks."""
    # Only the bad rows are materialised (line, reason): clean rows go straight to raw.
    key = sql.SQL(", ").join(sql.Identifier(k) for k in feed.key)
    conn.execute(
        sql.SQL(
            "create temp table _bad on commit drop as select _line_number, _reason"
            " from (select s._line_number, {reason} as _reason from {stage} s) c"
            " where _reason is not null"
        ).format(stage=stage, reason=_reason_case(feed, present, day, conn.info.server_version))
    )
    erased = erased_subject_lines(conn, feed, stage)
    if erased is not None:
        # Before any other reason: a line naming an erased subject is quarantined as
        # ERASED_SUBJECT whatever else is wrong with it, so its text is never kept.
        conn.execute(sql.SQL("create temp table _erased on commit drop as {}").format(erased))
        conn.execute("delete from _bad b using _erased e where b._line_number = e._line_number")
        conn.execute(
            "insert into _bad select distinct on (_line_number) * from _erased order by _line_number"
        )
        conn.execute("drop table _erased")
    for statement in _reference_checks(feed, present, day, registry, stage):
        conn.execute(statement)
    # A repeated business key among otherwise clean rows: the first occurrence wins.
    # (Hash-aggregate first: the window runs only over keys that repeat.)
    conn.execute(
        sql.SQL(
            """insert into _bad
            select _line_number, {dup} from (
                select s._line_number, row_number() over (partition by {key} order by s._line_number) as rn
                from {stage} s
                where ({key}) in (select {key} from {stage} group by {key} having count(*) > 1)
                  and not exists (select 1 from _bad b where b._line_number = s._line_number)
            ) d
            where rn > 1"""
        ).format(stage=stage, key=key, dup=sql.Literal(f"DUPLICATE_KEY|{feed.key[0]}"))
    )
    conn.execute("create index on _bad (_line_number)")
    conn.execute("analyze _bad")


def _quarantine(attempt: Attempt, quarantined: list[Quarantined]) -> None:
    """Add the rows ``_bad`` flagged to ``quarantined`` (with their raw lines), then write
    every quarantined line to ``quarantine.<feed>``."""
    conn, feed, facts = attempt.conn, attempt.feed, attempt.facts
    bad_rows = conn.execute(
        "select _line_number, split_part(_reason, '|', 1), split_part(_reason, '|', 2)"
        " from _bad order by _line_number"
    ).fetchall()
    if bad_rows:
        wanted = {r[0]: r for r in bad_rows}
        header = None
        for lineno, text in decoded_lines(feed, attempt.path, facts):
            if lineno == 1 and feed.format == "csv":
                header = text
            row = wanted.get(lineno)
            if row:
                _, reason, column = row
                if reason == RowReason.ERASED_SUBJECT:
                    text = control_fields_only(feed, header, text)
                quarantined.append(Quarantined(lineno, reason, column, _detail(feed, reason, column), text))
    with conn.cursor().copy(
        sql.SQL(
            "copy quarantine.{} (_business_date, _source_file, _file_sha256, _line_number, _load_id,"
            " _loaded_at, reason, column_name, detail, raw_line) from stdin"
        ).format(sql.Identifier(feed.name))
    ) as copy:
        for q in quarantined:
            copy.write_row(
                (
                    attempt.day,
                    str(attempt.path),
                    facts.sha256,
                    q.line,
                    attempt.load_id,
                    attempt.started,
                    q.reason,
                    q.column,
                    q.detail,
                    q.raw.replace("\x00", "\ufffd"),  # text cannot hold NUL: as decode's errors="replace"
                )
            )


def control_fields_only(feed: Feed, header: str | None, line: str) -> str:
    """An erased subject's line as it may be kept: the amounts and currency the source's
    control record totals (registry ``control``), every other field empty; nothing for a feed
    without a control block or a line that does not parse. The person's data is never kept,
    and the day still reconciles to the control record to the cent: an amount and a currency
    with no id are nobody's."""
    import csv
    import io
    import json

    if feed.control is None:
        return ""
    kept = {*feed.control.amounts, feed.control.currency}
    if feed.format == "jsonl":
        try:
            doc = json.loads(line)
        except ValueError:
            return ""
        return json.dumps({k: v for k, v in doc.items() if k in kept}) if isinstance(doc, dict) else ""
    if header is None:
        return ""
    dialect = {"delimiter": feed.delimiter, "quotechar": feed.quotechar}
    names = next(csv.reader([header.lstrip("\ufeff")], **dialect))
    fields = next(csv.reader([line], **dialect), [])
    if len(fields) != len(names):
        return ""
    out = io.StringIO()
    csv.writer(out, lineterminator="", **dialect).writerow(
        [v if n in kept else "" for n, v in zip(names, fields, strict=True)]
    )
    return out.getvalue()


def _detail(feed: Feed, reason: str, column: str) -> str:
    if not column:
        return reason
    col = feed.column(column)
    rule = {
        "MISSING_REQUIRED": "is required",
        "BAD_TYPE": f"is not a valid {col.type}",
        "BAD_PATTERN": f"does not match {col.pattern}",
        "NOT_ACCEPTED": f"is not one of {', '.join(col.accepted or ())}",
        "OUT_OF_RANGE": f"is outside [{col.min}, {col.max}]",
        "FUTURE_DATE": "is after the business day",
        "UNKNOWN_REFERENCE": f"is not a known {col.references}",
        "DUPLICATE_KEY": f"repeats key ({', '.join(feed.key)}) of an earlier line",
        "ERASED_SUBJECT": "names a customer or account erased on request (line text not kept, only its control amounts)",
    }.get(reason, reason)
    return f"column '{column}' {rule}"
