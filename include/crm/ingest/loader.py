"""Load one feed's file for one business day into ``raw``, exactly once.

The file is streamed through PostgreSQL ``COPY`` into a temporary table of text
columns, checked against the feed registry's rules in SQL, and split into the
day's raw partition (typed) and ``quarantine.<feed>`` (with line number, reason
and raw line). Everything happens in one transaction that first empties the
day's partition, so a re-run, a re-delivery or a retry after a crash leaves
exactly one copy. ``audit.load_log`` records every attempt and proves
``rows_in_file = rows_loaded + rows_quarantined``.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import Connection, sql

from crm.feeds import Column, Feed, Registry, load_registry
from crm.ingest.clean_copy import NewPartition, NotClean, load_clean_csv, load_clean_jsonl
from crm.ingest.lines import FileRefused, Identity, LineReader, check_inside, identity, open_regular
from crm.ingest.rules import (
    ASCII_COMPATIBLE,
    LOCAL_TZ,
    SHAPES,
    FileRule,
    RowReason,
    anchored,
    parse_json_line,
)
from crm.ingest.tables import LINEAGE_COLUMNS, ensure_feed_tables, ensure_partition, partition_name

log = logging.getLogger(__name__)

BAD_LINE_SHARE = 0.01  # above this share of undecodable lines the file's encoding is wrong
LOAD_WORK_MEM = "256MB"
STAGE_COLUMNS = {"_line_number", "_source_line"}  # the CSV stage's own columns
LONG_LINE_KEPT = 4096  # characters of an over-long line kept in quarantine.raw_line


class LoadFailed(FileRefused):
    """An unexpected error while loading a file: recorded, rolled back, reported in one line
    (the traceback goes to the log, not to the user)."""


class LoadBalanceError(Exception):
    """rows_in_file != rows_loaded + rows_quarantined: something was lost or duplicated."""


@dataclass
class LoadResult:
    feed: str
    business_date: dt.date
    path: Path
    status: str
    sha256: str = ""
    rows_in_file: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    load_id: int | None = None
    warnings: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    late: bool = False
    method: str = ""  # "copy": one typed COPY of a clean file; "rows": staged and checked row by row

    def summary(self) -> str:
        text = (
            f"{self.feed} {self.business_date}: {self.status}, {self.rows_in_file} rows in file, "
            f"{self.rows_loaded} loaded, {self.rows_quarantined} quarantined"
            + (f" [{self.method}]" if self.method else "")
        )
        if self.reasons:
            text += " (" + ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.items())) + ")"
        if self.warnings:
            text += "; warnings: " + "; ".join(self.warnings)
        return text


@dataclass
class _Quarantined:
    line: int
    reason: str
    column: str | None
    detail: str
    raw: str


# --------------------------------------------------------------------------- file scan
@dataclass
class _FileFacts:
    sha256: str
    encoding: str
    bom: bool
    crlf: bool
    data_lines: int
    bad_lines: set[int]  # undecodable in the file's encoding
    nul_lines: set[int] = field(default_factory=set)  # hold a NUL byte (PostgreSQL text cannot)
    long_lines: set[int] = field(default_factory=set)  # longer than the feed's max_line_bytes
    identity: Identity | None = None  # the file as scanned: a load checks it did not change

    @property
    def odd_lines(self) -> set[int]:
        """Lines that cannot be staged as they are (quarantined before any rule)."""
        return self.bad_lines | self.nul_lines | self.long_lines


def _scan(feed: Feed, path: Path) -> _FileFacts:
    """First pass: checksum, encoding, line ends, truncation (streaming, bounded memory).

    Works on blocks of whole lines at C speed; only a block that does not decode is
    looked at line by line, to number its undecodable lines.
    """
    reader = LineReader(path, max_line=feed.max_line_bytes, digest=hashlib.sha256())
    lines = 0
    bad: set[int] = set()
    nul: set[int] = set()
    declared_text = False  # a non-ASCII line is valid in the declared encoding
    crlf = False
    bom = False
    ascii_ok = codecs.lookup(feed.encoding).name in ASCII_COMPATIBLE
    for block in reader.blocks():  # every line, over-long ones cut
        if lines == 0 and block.startswith(codecs.BOM_UTF8):
            bom = True
            block = block[len(codecs.BOM_UTF8) :]
            if not block:  # the file is only a byte-order mark
                continue
        # A single-byte search first: memchr is several times faster than a two-byte one.
        crlf = crlf or (b"\r" in block and b"\r\n" in block)
        # Pure ASCII is valid in an ASCII-compatible encoding, and isascii() is far cheaper
        # than decoding.
        if not (ascii_ok and block.isascii()):
            try:
                block.decode(feed.encoding)
                declared_text = True
            except UnicodeDecodeError:
                for i, line in enumerate(block.split(b"\n"), start=lines + 1):
                    if i in reader.long_lines:  # cut anywhere, maybe inside a character
                        continue
                    try:
                        line.decode(feed.encoding)
                        declared_text = declared_text or not line.isascii()
                    except UnicodeDecodeError:
                        bad.add(i)
        if b"\x00" in block:
            nul.update(i for i, line in enumerate(block.split(b"\n"), start=lines + 1) if b"\x00" in line)
        lines += block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
    size, sha256 = reader.size, reader.digest.hexdigest()
    if reader.opened is not None and reader.opened.size != size:
        raise FileRefused(path, FileRule.FILE_CHANGED, "the file changed while it was read")
    if size == 0 and feed.format == "csv":
        raise FileRefused(path, "FILE_EMPTY", "file has no bytes (a day with no rows still has a header)")
    if size == 0:  # JSON Lines: no events that day
        return _FileFacts(sha256, feed.encoding, False, False, 0, set(), identity=reader.opened)
    if len(nul) > max(1, BAD_LINE_SHARE * lines):
        raise FileRefused(
            path,
            "ENCODING",
            f"{len(nul)} of {lines} lines hold NUL bytes (first: line {min(nul)}): "
            f"not {feed.encoding} text (UTF-16?)",
        )
    if not reader.ends_with_newline:
        raise FileRefused(
            path, "FILE_TRUNCATED", f"line {lines} has no line end: the file was cut during delivery"
        )
    encoding = feed.encoding
    # A tolerated encoding converts a file written in it, not a mixed one: decoding the
    # valid non-ASCII lines of a mostly declared-encoding file as GBK would silently turn
    # them into other characters. In a mixed file the odd lines are undecodable.
    tolerated = () if declared_text else feed.tolerated_encodings
    if bad:
        for candidate in tolerated:
            if _decodes(path, candidate, bom):
                encoding, bad = candidate, set()
                break
        else:
            if len(bad) > max(1, BAD_LINE_SHARE * lines):
                first = min(bad)
                why = (
                    "while other non-ASCII lines are: a file of mixed encodings is not converted"
                    if declared_text
                    else f"and no tolerated encoding ({', '.join(tolerated) or 'none'}) decodes it"
                )
                raise FileRefused(
                    path,
                    "ENCODING",
                    f"{len(bad)} of {lines} lines are not valid {feed.encoding} (first: line {first}) {why}",
                )
    data_lines = lines - (1 if feed.format == "csv" and feed.header else 0)
    return _FileFacts(sha256, encoding, bom, crlf, data_lines, bad, nul, reader.long_lines, reader.opened)


def _decodes(path: Path, encoding: str, bom: bool) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    with open_regular(path) as fh:
        if bom:
            fh.read(len(codecs.BOM_UTF8))
        try:
            for block in iter(lambda: fh.read(1 << 20), b""):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def _lines(feed: Feed, path: Path, facts: _FileFacts) -> Iterator[tuple[int, str]]:
    """Decoded lines without line ends, numbered from 1 (the header is line 1)."""
    for start, lines in _line_blocks(feed, path, facts):
        yield from enumerate(lines, start=start)


# --------------------------------------------------------------------------- checks in SQL
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
        num = sql.SQL("{}::numeric").format(ref)
        if col.min is not None:
            checks.append((sql.SQL("{} < {}").format(num, lit(col.min)), "OUT_OF_RANGE"))
        if col.max is not None:
            checks.append((sql.SQL("{} > {}").format(num, lit(col.max)), "OUT_OF_RANGE"))
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
        if col.not_future:
            end = day + dt.timedelta(days=1)
            if col.type == "date":
                cond = sql.SQL("{}::date >= {}").format(ref, lit(end))
            elif col.type == "timestamp":
                cond = sql.SQL("{}::timestamp >= {}::timestamp").format(ref, lit(end))
            else:
                cond = sql.SQL("{}::timestamptz >= ({}::timestamp at time zone {})").format(
                    ref, lit(end), lit(LOCAL_TZ)
                )
            checks.append((cond, "FUTURE_DATE"))
    elif col.type == "boolean":
        checks.append((sql.SQL("not {}({}, 'boolean')").format(valid_fn, ref), "BAD_TYPE"))
    if col.pattern:
        checks.append((sql.SQL("{} !~ {}").format(ref, lit(col.pattern)), "BAD_PATTERN"))
    if col.accepted:
        checks.append(
            (
                sql.SQL("{} <> all({})").format(ref, lit(list(col.accepted))),
                "NOT_ACCEPTED",
            )
        )
    return checks


def _reason_case(
    feed: Feed, present: set[str], day: dt.date, registry: Registry, server_version: int
) -> sql.Composable:
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
    statements = []
    for col in feed.columns:
        if col.reference is None or col.name not in present:
            continue
        ref_feed, ref_col = col.reference
        statements.append(
            sql.SQL(
                "insert into _bad select s._line_number, {flag} from {stage} s"
                " where s.{c} is not null"
                " and not exists (select 1 from _bad b where b._line_number = s._line_number)"
                " and not exists (select 1 from raw.{t} r where r.{rc} = s.{c} and r._business_date <= {d})"
            ).format(
                flag=sql.Literal(f"UNKNOWN_REFERENCE|{col.name}"),
                stage=stage,
                c=sql.Identifier(col.name),
                t=sql.Identifier(registry.feed(ref_feed).name),
                rc=sql.Identifier(ref_col),
                d=sql.Literal(day),
            )
        )
    return statements


def _typed(col: Column, present: set[str]) -> sql.Composable:
    if col.name not in present:
        return sql.SQL("null::{}").format(sql.SQL(col.pg_type))
    if col.type == "text":
        return sql.Identifier(col.name)
    return sql.SQL("{}::{}").format(sql.Identifier(col.name), sql.SQL(col.pg_type))


# --------------------------------------------------------------------------- the load
def _line_blocks(feed: Feed, path: Path, facts: _FileFacts) -> Iterator[tuple[int, list[str]]]:
    """Decoded lines (no line ends) in blocks: (number of the block's first line, lines).

    A record is one physical line: these feeds never quote line breaks. An undecodable line
    is decoded with replacement characters, an over-long one is its head only.
    """
    lineno = 1
    odd = facts.bad_lines | facts.long_lines
    for block in LineReader(path, max_line=feed.max_line_bytes, skip_bom=facts.bom).blocks():
        raws = block.split(b"\n")
        if raws[-1] == b"":
            raws.pop()
        if odd and any(lineno + i in odd for i in range(len(raws))):
            text = [
                r.decode(facts.encoding, errors="replace" if lineno + i in odd else "strict")
                for i, r in enumerate(raws)
            ]
            for i in range(len(raws)):
                if lineno + i in facts.long_lines:
                    text[i] = text[i][:LONG_LINE_KEPT]
        else:
            text = block.decode(facts.encoding).split("\n")
            if text[-1] == "":
                text.pop()
        text = [t.rstrip("\r\n") for t in text] if facts.crlf else [t.rstrip("\n") for t in text]
        yield lineno, text
        lineno += len(raws)


def _read_header(feed: Feed, path: Path, facts: _FileFacts) -> list[str]:
    """The CSV header's column names; FileRefused if a registered column is missing or repeated."""
    if 1 in facts.long_lines:
        raise FileRefused(
            path, FileRule.SCHEMA_BAD_HEADER, f"line 1 is longer than {feed.max_line_bytes} bytes"
        )
    with open_regular(path) as fh:
        raw = fh.readline(feed.max_line_bytes + len(codecs.BOM_UTF8) + 2)
    if facts.bom:
        raw = raw[len(codecs.BOM_UTF8) :]
    if not raw.strip():
        raise FileRefused(path, "FILE_EMPTY", "file has no header line")
    line = raw.decode(facts.encoding, errors="replace").rstrip("\r\n")
    try:
        names = next(csv.reader([line], delimiter=feed.delimiter, quotechar=feed.quotechar, strict=True))
    except csv.Error as err:
        raise FileRefused(path, "SCHEMA_BAD_HEADER", f"line 1 is not a CSV header ({err})") from None
    # A column without a name (a trailing delimiter, say) is an extra column all the same,
    # and so is one named like a column the loader adds (renamed: the stage has those).
    header = [
        f"{h}_{i}" if h in STAGE_COLUMNS else h or f"_unnamed_{i}"
        for i, h in enumerate((n.strip() for n in names), start=1)
    ]
    missing = [c for c in feed.column_names if c not in header]
    if missing:
        raise FileRefused(
            path,
            "SCHEMA_MISSING_COLUMN",
            f"header lacks registered column(s) {', '.join(missing)} (header: {', '.join(header)})",
        )
    if len(set(header)) != len(header):
        raise FileRefused(path, "SCHEMA_DUPLICATE_COLUMN", f"header repeats a column: {', '.join(header)}")
    return header


def _stage_csv(
    conn: Connection,
    feed: Feed,
    path: Path,
    facts: _FileFacts,
    quarantined: list[_Quarantined],
    stage: sql.Identifier,
    header: list[str],
) -> tuple[list[str], int]:
    """COPY the CSV's well-formed lines into the stage table; return header and staged count.

    Python only checks each line's field count (fast path: no quote character, count the
    delimiters; otherwise the csv module) and prefixes the line number; PostgreSQL's own
    CSV parser does the rest.
    """
    blocks = _line_blocks(feed, path, facts)
    first_line, block = next(blocks)  # the header line was read (and checked) by _read_header
    cols = [sql.SQL("{} text").format(sql.Identifier(h)) for h in header]
    conn.execute(
        sql.SQL("create unlogged table {} (_line_number integer, _source_line text, {})").format(
            stage, sql.SQL(", ").join(cols)
        )
    )
    # Empty strings, quoted or not, are nulls in every column (these systems' convention).
    copy_sql = sql.SQL(
        "copy {} from stdin (format csv, delimiter {}, quote {}, null '', force_null ({}))"
    ).format(
        stage,
        sql.Literal(feed.delimiter),
        sql.Literal(feed.quotechar),
        sql.SQL(", ").join(sql.Identifier(h) for h in header),
    )
    width = len(header)
    d, quote = feed.delimiter, feed.quotechar
    staged = 0

    def staged_fields(lineno: int, line: str) -> tuple[str | None, str]:
        """(the reason the line cannot be staged or None, its fields as COPY input).

        A line with a quote or a carriage return goes in with its fields quoted as the csv
        module read them: PostgreSQL reads a stray quote differently, and a bare CR not at
        all (a quoted empty field is null, too).
        """
        if quote not in line:
            if line.count(d) != width - 1:
                return "BAD_COLUMN_COUNT", line
            if "\r" not in line:
                return None, line
            fields = line.split(d)
        else:
            try:
                fields = next(csv.reader([line], delimiter=d, quotechar=quote, strict=True))
            except (csv.Error, StopIteration):
                return "BAD_COLUMN_COUNT", line
            if len(fields) != width:
                return "BAD_COLUMN_COUNT", line
        return None, d.join(f"{quote}{f.replace(quote, quote * 2)}{quote}" for f in fields)

    def pending() -> Iterator[tuple[int, list[str]]]:
        yield first_line + 1, block[1:]
        yield from blocks

    with conn.cursor().copy(copy_sql) as copy:
        for start, lines in pending():
            out = []
            for i, line in enumerate(lines):
                lineno = start + i
                if odd := _odd_line(feed, facts, lineno):
                    quarantined.append(_Quarantined(lineno, odd[0], None, odd[1], line))
                    continue
                reason, fields = staged_fields(lineno, line)
                if reason is None:
                    # The whole line, quoted, is the row's _source_line.
                    out.append(f"{lineno}{d}{quote}{line.replace(quote, quote * 2)}{quote}{d}{fields}\n")
                    continue
                detail = f"field count differs from the header's {width}"
                quarantined.append(_Quarantined(lineno, reason, None, detail, line))
            staged += len(out)
            if out:
                copy.write("".join(out))
    return header, staged


def _odd_line(feed: Feed, facts: _FileFacts, lineno: int) -> tuple[RowReason, str] | None:
    """(reason, detail) if the scan found the line cannot be staged as it is, else None."""
    if lineno in facts.long_lines:
        return RowReason.LINE_TOO_LONG, (
            f"longer than {feed.max_line_bytes} bytes; its first {LONG_LINE_KEPT} characters kept"
        )
    if lineno in facts.bad_lines:
        return RowReason.UNDECODABLE, f"not valid {facts.encoding}"
    if lineno in facts.nul_lines:
        return RowReason.NUL_BYTE, "a NUL byte (0x00), which PostgreSQL text cannot store"
    return None


# JSON escapes jsonb may refuse: \u0000, and surrogates (refused when unpaired). Only a line
# holding one is looked at closely, after json.loads (where a surrogate left is unpaired).
_JSONB_SUSPECT = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _jsonb_storable(value: object) -> bool:
    """False if a parsed JSON value holds a NUL or an unpaired surrogate, in a key or a
    string (json.loads takes both; PostgreSQL's jsonb refuses them)."""
    if isinstance(value, str):
        return not _UNSTORABLE.search(value)
    if isinstance(value, dict):
        return all(_jsonb_storable(k) and _jsonb_storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(map(_jsonb_storable, value))
    return True


def _stage_jsonl(
    conn: Connection,
    feed: Feed,
    path: Path,
    facts: _FileFacts,
    quarantined: list[_Quarantined],
    stage: sql.Identifier,
) -> tuple[list[str], int]:
    """COPY the JSON Lines file's objects into _stage_doc(doc jsonb), then the stage table as text."""
    conn.execute("create temp table _stage_doc (_line_number integer, source text, doc jsonb) on commit drop")
    # (the typed text view below is an unlogged table so the rule checks can run in parallel)
    staged = 0
    with conn.cursor().copy("copy _stage_doc from stdin") as copy:
        for lineno, raw in _lines(feed, path, facts):
            if odd := _odd_line(feed, facts, lineno):
                quarantined.append(_Quarantined(lineno, odd[0], None, odd[1], raw))
                continue
            try:
                doc = parse_json_line(raw)
            except ValueError as err:
                quarantined.append(_Quarantined(lineno, "BAD_JSON", None, f"not JSON: {err}", raw))
                continue
            if not isinstance(doc, dict):
                quarantined.append(_Quarantined(lineno, "BAD_JSON", None, "not a JSON object", raw))
                continue
            if _JSONB_SUSPECT.search(raw) and not _jsonb_storable(doc):
                detail = "a \\u0000 or unpaired surrogate escape, which PostgreSQL's jsonb cannot store"
                quarantined.append(_Quarantined(lineno, "BAD_JSON", None, detail, raw))
                continue
            # psycopg escapes for COPY's text format (JSON may hold raw tabs and carriage
            # returns between tokens) and buffers the rows.
            copy.write_row((lineno, raw, raw))
            staged += 1
    # Text view of the registered keys (JSON null / absent -> SQL null; '' -> null).
    cols = [
        sql.SQL("nullif(doc ->> {}, '') as {}").format(sql.Literal(c), sql.Identifier(c))
        for c in feed.column_names
    ]
    extra = sql.SQL("nullif(doc - {}::text[], '{{}}'::jsonb) as _extra_doc").format(
        sql.Literal(feed.column_names)
    )
    conn.execute(
        sql.SQL(
            "create unlogged table {} as select _line_number, source as _source_line, {}, {} from _stage_doc"
        ).format(stage, sql.SQL(", ").join(cols), extra)
    )
    return feed.column_names, staged


def _load_rows(
    conn: Connection,
    feed: Feed,
    registry: Registry,
    day: dt.date,
    path: Path,
    facts: _FileFacts,
    header: list[str],
    load_id: int,
    started: dt.datetime,
    quarantined: list[_Quarantined],
    result: LoadResult,
) -> int:
    """The row-by-row path: stage text, flag each bad line with its reason, load the rest.

    Rows loaded are returned; bad lines are appended to ``quarantined`` and written to
    ``quarantine.<feed>``.
    """
    partition = ensure_partition(conn, feed, day)
    # An unlogged work table (not a temp one): shared buffers, parallel rule checks.
    # Created and dropped inside this transaction, so a crash leaves nothing behind.
    stage = sql.Identifier("raw", f"_stage_{load_id}")
    # Replace the day: one copy, whatever ran before (re-run, re-delivery, crash).
    conn.execute(sql.SQL("truncate {}").format(partition))
    if feed.format == "csv":
        _stage_csv(conn, feed, path, facts, quarantined, stage, header)
        extra_cols = [h for h in header if h not in feed.column_names]
        if extra_cols:
            result.warnings.append(f"SCHEMA_EXTRA_COLUMN: kept {', '.join(extra_cols)} in _extra")
        extra_expr = (
            sql.SQL("nullif(jsonb_strip_nulls(jsonb_build_object({})), '{{}}'::jsonb)").format(
                sql.SQL(", ").join(
                    sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(c)) for c in extra_cols
                )
            )
            if extra_cols
            else sql.SQL("null::jsonb")
        )
    else:
        header, _ = _stage_jsonl(conn, feed, path, facts, quarantined, stage)
        extra_expr = sql.SQL("_extra_doc")
    present = set(header)
    # Only the bad rows are materialised (line, reason): clean rows go straight to raw.
    key = sql.SQL(", ").join(sql.Identifier(k) for k in feed.key)
    conn.execute(
        sql.SQL(
            "create temp table _bad on commit drop as select _line_number, _reason"
            " from (select s._line_number, {reason} as _reason from {stage} s) c"
            " where _reason is not null"
        ).format(stage=stage, reason=_reason_case(feed, present, day, registry, conn.info.server_version))
    )
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
    target_cols = [sql.Identifier(c) for c in [*feed.column_names, *(n for n, _ in LINEAGE_COLUMNS)]]
    values = [_typed(c, present) for c in feed.columns] + [
        sql.Literal(day),
        sql.Literal(str(path)),
        sql.Literal(facts.sha256),
        sql.Identifier("_line_number"),
        sql.Literal(load_id),
        sql.Literal(started),
        extra_expr,
        sql.SQL("_source_line" if feed.source_line else "null"),
    ]
    loaded = conn.execute(
        sql.SQL(
            "insert into {} ({}) select {} from {} s"
            " where not exists (select 1 from _bad b where b._line_number = s._line_number)"
        ).format(partition, sql.SQL(", ").join(target_cols), sql.SQL(", ").join(values), stage)
    ).rowcount
    bad_rows = conn.execute(
        "select _line_number, split_part(_reason, '|', 1), split_part(_reason, '|', 2)"
        " from _bad order by _line_number"
    ).fetchall()
    if bad_rows:
        wanted = {r[0]: r for r in bad_rows}
        for lineno, text in _lines(feed, path, facts):
            row = wanted.get(lineno)
            if row:
                _, reason, column = row
                quarantined.append(_Quarantined(lineno, reason, column, _detail(feed, reason, column), text))
    with conn.cursor().copy(
        sql.SQL(
            "copy quarantine.{} (_business_date, _source_file, _file_sha256, _line_number, _load_id,"
            " _loaded_at, reason, column_name, detail, raw_line) from stdin"
        ).format(sql.Identifier(feed.name))
    ) as copy:
        for q in quarantined:
            copy.write_row(
                (
                    day,
                    str(path),
                    facts.sha256,
                    q.line,
                    load_id,
                    started,
                    q.reason,
                    q.column,
                    q.detail,
                    q.raw.replace("\x00", "\ufffd"),  # text cannot hold NUL: as decode's errors="replace"
                )
            )
    conn.execute(sql.SQL("drop table {}").format(stage))
    return loaded


def _load_clean(
    conn: Connection,
    feed: Feed,
    registry: Registry,
    day: dt.date,
    path: Path,
    facts: _FileFacts,
    header: list[str],
    load_id: int,
    started: dt.datetime,
) -> int | None:
    """Rows loaded by the clean-file path (crm.ingest.clean_copy), None if the file needs
    the row-by-row path (everything the attempt did is rolled back to a savepoint)."""
    if facts.odd_lines:
        return None
    file = {"encoding": facts.encoding, "bom": facts.bom, "crlf": facts.crlf, "data_lines": facts.data_lines}
    try:
        with conn.transaction():
            new = NewPartition(
                conn,
                feed,
                registry,
                day,
                path=path,
                sha256=facts.sha256,
                load_id=load_id,
                loaded_at=started,
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


def load_file(
    conn: Connection,
    feed: Feed,
    day: dt.date,
    path: Path,
    *,
    run_id: str | None = None,
    force: bool = False,
    registry: Registry | None = None,
    clean_copy: bool = True,
    root: Path | None = None,
) -> LoadResult:
    """Load ``path`` as ``feed``'s file for business day ``day``.

    Raises FileRefused, with the rule, for anything that keeps the file from loading,
    an unexpected error included (LoadFailed, rule LOAD_ERROR; its traceback is logged):
    every refusal is in ``audit.load_log`` and nothing of the file is loaded. With
    ``root``, the file must lie inside that folder once every link is resolved.

    ``clean_copy=False`` skips the clean-file path (crm.ingest.clean_copy) and stages the
    file row by row even if it is clean (same outcome, slower: for comparison and debugging).
    """
    registry = registry or load_registry()
    result = LoadResult(feed.name, day, path, status="running")
    try:
        if root is not None:
            check_inside(path, root)
        facts = _scan(feed, path)
    except Exception as err:
        refusal = _refusal(feed, day, path, err, None)
        record_refusal(conn, feed, day, path, refusal, run_id)
        raise refusal from (None if refusal is err else err)
    result.sha256 = facts.sha256
    if facts.bom:
        result.warnings.append("BOM_STRIPPED: UTF-8 byte-order mark removed")
    if facts.crlf:
        result.warnings.append("CRLF: Windows line ends normalised")
    if facts.encoding != feed.encoding:
        result.warnings.append(f"ENCODING_CONVERTED: decoded as {facts.encoding} (tolerated by the feed)")

    with conn.transaction():
        ensure_feed_tables(conn, feed)
        if not force:
            done = conn.execute(
                "select load_id from audit.load_log where feed = %s and business_date = %s"
                " and file_sha256 = %s and status = 'loaded'",
                (feed.name, day, facts.sha256),
            ).fetchone()
            if done:
                result.status, result.load_id = "skipped_duplicate", done[0]
                result.rows_in_file = facts.data_lines
                log.info(
                    "feed=%s day=%s file=%s already loaded as load %s: skipped", feed.name, day, path, done[0]
                )
                return result

    started = dt.datetime.now(dt.UTC)
    try:
        with conn.transaction():
            load_id = conn.execute(
                "insert into audit.load_log (feed, business_date, file_path, file_sha256, status, run_id, started_at)"
                " values (%s, %s, %s, %s, 'running', %s, %s) returning load_id",
                (feed.name, day, str(path), facts.sha256, run_id, started),
            ).fetchone()[0]
            result.load_id = load_id
            # Hash joins and aggregates over a whole day's file stay in memory.
            conn.execute(sql.SQL("set local work_mem = {}").format(sql.Literal(LOAD_WORK_MEM)))
            # The rule checks are CPU-bound and return few rows: let every core scan the stage.
            conn.execute("set local parallel_setup_cost = 0")
            conn.execute("set local parallel_tuple_cost = 0.0001")
            conn.execute(
                sql.SQL("delete from quarantine.{} where _business_date = %s").format(
                    sql.Identifier(feed.name)
                ),
                (day,),
            )
            if facts.data_lines == 0:
                _warn_if_day_emptied(conn, feed, day, result)
            header = _read_header(feed, path, facts) if feed.format == "csv" else feed.column_names
            quarantined: list[_Quarantined] = []
            loaded = None
            if clean_copy:
                loaded = _load_clean(conn, feed, registry, day, path, facts, header, load_id, started)
            result.method = "copy" if loaded is not None else "rows"
            if loaded is None:
                loaded = _load_rows(
                    conn, feed, registry, day, path, facts, header, load_id, started, quarantined, result
                )
            result.rows_in_file = facts.data_lines
            result.rows_loaded = loaded
            result.rows_quarantined = len(quarantined)
            for q in quarantined:
                result.reasons[q.reason] = result.reasons.get(q.reason, 0) + 1
            if result.rows_in_file != result.rows_loaded + result.rows_quarantined:
                raise LoadBalanceError(
                    f"{path}: {result.rows_in_file} rows in file but {result.rows_loaded} loaded + "
                    f"{result.rows_quarantined} quarantined; load rolled back"
                )
            _refuse_if_mostly_bad(feed, path, result, quarantined)
            if identity(path) != facts.identity:
                raise FileRefused(path, FileRule.FILE_CHANGED, "the file changed while it was loaded")
            # Fresh statistics for the new day (row count; keys and references): the next
            # feeds' reference checks (an index probe, not a scan of every customer, for a
            # small file) and dbt plan with them. Only those columns: a full ANALYZE of a
            # wide feed costs more than its COPY (customers: 0.4 s vs 0.04 s).
            lookups = dict.fromkeys([*feed.key, *(c.name for c in feed.columns if c.reference or c.index)])
            conn.execute(
                sql.SQL("analyze raw.{} ({})").format(
                    sql.Identifier(partition_name(feed, day)),
                    sql.SQL(", ").join(map(sql.Identifier, lookups)),
                )
            )
            later = conn.execute(
                "select max(business_date) from audit.load_log"
                " where feed = %s and status = 'loaded' and business_date > %s",
                (feed.name, day),
            ).fetchone()[0]
            if later is not None:
                result.late = True
                result.warnings.append(
                    f"LATE_PARTITION: loaded after {later}; downstream reprocessing requested"
                )
                conn.execute(
                    "insert into audit.reprocess_requests (feed, business_date, reason, load_id)"
                    " values (%s, %s, 'late_partition', %s)",
                    (feed.name, day, load_id),
                )
            conn.execute(
                "update audit.load_log set status = 'superseded'"
                " where feed = %s and business_date = %s and status = 'loaded'",
                (feed.name, day),
            )
            conn.execute(
                "update audit.load_log set status = 'loaded', rows_in_file = %s, rows_loaded = %s,"
                " rows_quarantined = %s, warnings = %s, finished_at = clock_timestamp() where load_id = %s",
                (
                    result.rows_in_file,
                    result.rows_loaded,
                    result.rows_quarantined,
                    json.dumps(result.warnings),
                    load_id,
                ),
            )
        result.status = "loaded"
    except Exception as err:
        refusal = _refusal(feed, day, path, err, facts.identity)
        _record_failure(conn, feed, day, path, facts.sha256, run_id, started, refusal)
        raise refusal from (None if refusal is err else err)
    log.info("load %s", result.summary())
    return result


def _refusal(feed: Feed, day: dt.date, path: Path, err: Exception, scanned: Identity | None) -> FileRefused:
    """What to tell the user about ``err``: a refusal by rule, in one line.

    A file that changed under the load is FILE_CHANGED, whatever broke first. Anything
    unexpected is LOAD_ERROR, naming only the error's type: its text may quote a value of
    the file, and the full traceback goes to the log.
    """
    changed = scanned is not None and identity(path) != scanned
    if changed and getattr(err, "rule", None) != FileRule.FILE_CHANGED:
        return FileRefused(path, FileRule.FILE_CHANGED, "the file changed while it was loaded")
    if isinstance(err, FileRefused):
        return err
    log.error("feed=%s day=%s file=%s: unexpected error while loading", feed.name, day, path, exc_info=err)
    return LoadFailed(
        path,
        FileRule.LOAD_ERROR,
        f"unexpected {type(err).__name__} while loading; the traceback is in the log. "
        f"Fix the cause, then re-run: crm ingest --date {day} --feed {feed.name}",
    )


def _warn_if_day_emptied(conn: Connection, feed: Feed, day: dt.date, result: LoadResult) -> None:
    """A file without rows may replace a day that held rows (a correction): say so."""
    previous = conn.execute(
        "select load_id, rows_loaded from audit.load_log"
        " where feed = %s and business_date = %s and status = 'loaded' and rows_loaded > 0",
        (feed.name, day),
    ).fetchone()
    if previous:
        result.warnings.append(
            f"{FileRule.DAY_EMPTIED}: the day held {previous[1]} rows (load {previous[0]}); this file has none"
        )
        log.warning("feed=%s day=%s: a file without rows replaces %d rows", feed.name, day, previous[1])


def _refuse_if_mostly_bad(
    feed: Feed, path: Path, result: LoadResult, quarantined: list[_Quarantined]
) -> None:
    """TOO_MANY_BAD_ROWS if more lines are bad than the feed tolerates (the load rolls back)."""
    bad, lines = result.rows_quarantined, result.rows_in_file
    too_many = lines >= feed.bad_share_min_rows and bad > feed.max_bad_share * lines
    if not bad or not (too_many or result.rows_loaded == 0):
        return
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(result.reasons.items()))
    first = "; ".join(
        f"line {q.line} {q.reason}" + (f" in column '{q.column}'" if q.column else "")
        for q in sorted(quarantined, key=lambda q: q.line)[:3]
    )
    raise FileRefused(
        path,
        FileRule.TOO_MANY_BAD_ROWS,
        f"{bad} of {lines} lines broke row rules ({reasons}; first: {first}), more than the feed's "
        f"max_bad_share of {feed.max_bad_share:.0%}"
        + ("" if too_many else " (no line was good)")
        + "; the file stays in landing for inspection",
    )


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
    }.get(reason, reason)
    return f"column '{column}' {rule}"


def _record_failure(
    conn: Connection,
    feed: Feed,
    day: dt.date,
    path: Path,
    sha: str,
    run_id: str | None,
    started: dt.datetime,
    err: Exception,
) -> None:
    """Write the failed attempt to the load log in its own transaction (the load rolled back)."""
    rule = getattr(err, "rule", type(err).__name__)
    status = "refused" if isinstance(err, FileRefused) and not isinstance(err, LoadFailed) else "failed"
    try:
        with conn.transaction():
            conn.execute(
                "insert into audit.load_log (feed, business_date, file_path, file_sha256, status, rule, error,"
                " run_id, started_at, finished_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp())",
                (feed.name, day, str(path), sha, status, rule, str(err)[:4000], run_id, started),
            )
    except psycopg.Error:
        log.exception("could not record the failed load of %s", path)


def record_refusal(
    conn: Connection, feed: Feed, day: dt.date, path: Path, err: FileRefused, run_id: str | None = None
) -> None:
    """Record a file refused before any load started (missing, empty, truncated, encoding)."""
    _record_failure(conn, feed, day, path, "", run_id, dt.datetime.now(dt.UTC), err)
