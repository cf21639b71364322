"""Staging for the row-by-row path: the file's lines as text rows in a stage table.

``stage_csv`` and ``stage_jsonl`` COPY each well-formed line into an unlogged stage
table of text columns (plus its line number and source text), where the row rules run in
SQL (``crm.ingest.row_path``). A line that cannot be staged (undecodable, a NUL byte,
too long, the wrong field count, not a JSON object) goes to ``quarantined`` instead.
``read_header`` checks a CSV header against the registry (FileRefused if it cannot load).
"""

from __future__ import annotations

import codecs
import csv
import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from crm.feeds import Feed
from crm.ingest.attempt import Attempt
from crm.ingest.checks import jsonl_extra
from crm.ingest.lines import FileRefused, LineReader, open_regular
from crm.ingest.rules import FileRule, RowReason, parse_json_line
from crm.ingest.scan import FileFacts

STAGE_COLUMNS = {"_line_number", "_source_line"}  # the CSV stage's own columns
LONG_LINE_KEPT = 4096  # characters of an over-long line kept in quarantine.raw_line


@dataclass
class Quarantined:
    """A line for ``quarantine.<feed>``: its number, the rule it broke and the line itself."""

    line: int
    reason: str
    column: str | None
    detail: str
    raw: str


def decoded_lines(feed: Feed, path: Path, facts: FileFacts) -> Iterator[tuple[int, str]]:
    """Decoded lines without line ends, numbered from 1 (the header is line 1)."""
    for start, lines in _line_blocks(feed, path, facts):
        yield from enumerate(lines, start=start)


def _line_blocks(feed: Feed, path: Path, facts: FileFacts) -> Iterator[tuple[int, list[str]]]:
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


def read_header(feed: Feed, path: Path, facts: FileFacts) -> list[str]:
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
            f"header lacks registered column(s) {', '.join(missing)} ({_describe_header(feed, header)})",
        )
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise FileRefused(path, "SCHEMA_DUPLICATE_COLUMN", f"header repeats column(s) {', '.join(repeated)}")
    return header


def _describe_header(feed: Feed, header: list[str]) -> str:
    """What line 1 holds, without echoing a value: a header-less file's line 1 is a data row
    (names, phone numbers), so an unknown field is named only when it looks like a rename
    of a missing registered column (close to its name)."""
    unknown = [h for h in header if h not in feed.column_names]
    missing = [c for c in feed.column_names if c not in header]
    renamed = {
        h: close[0] for h in unknown if (close := difflib.get_close_matches(h, missing, n=1, cutoff=0.75))
    }
    text = f"line 1 has {len(header)} fields, {len(header) - len(unknown)} of them registered columns"
    if renamed:
        text += "; renamed? " + ", ".join(f"{h} (for {c})" for h, c in renamed.items())
    if len(renamed) < len(unknown):
        text += f"; {len(unknown) - len(renamed)} other fields not shown (a file without a header?)"
    return text


def stage_csv(
    attempt: Attempt, stage: sql.Identifier, header: list[str], quarantined: list[Quarantined]
) -> tuple[list[str], int]:
    """COPY the CSV's well-formed lines into the stage table; return header and staged count.

    Python only checks each line's field count (fast path: no quote character, count the
    delimiters; otherwise the csv module) and prefixes the line number; PostgreSQL's own
    CSV parser does the rest.
    """
    conn, feed, path, facts = attempt.conn, attempt.feed, attempt.path, attempt.facts
    blocks = _line_blocks(feed, path, facts)
    first_line, block = next(blocks)  # the header line was read (and checked) by read_header
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
                    quarantined.append(Quarantined(lineno, odd[0], None, odd[1], line))
                    continue
                reason, fields = staged_fields(lineno, line)
                if reason is None:
                    # The whole line, quoted, is the row's _source_line.
                    out.append(f"{lineno}{d}{quote}{line.replace(quote, quote * 2)}{quote}{d}{fields}\n")
                    continue
                detail = f"field count differs from the header's {width}"
                quarantined.append(Quarantined(lineno, reason, None, detail, line))
            staged += len(out)
            if out:
                copy.write("".join(out))
    return header, staged


def _odd_line(feed: Feed, facts: FileFacts, lineno: int) -> tuple[RowReason, str] | None:
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


def stage_jsonl(
    attempt: Attempt, stage: sql.Identifier, quarantined: list[Quarantined]
) -> tuple[list[str], int]:
    """COPY the JSON Lines file's objects into _stage_doc(doc jsonb), then the stage table as text."""
    conn, feed, path, facts = attempt.conn, attempt.feed, attempt.path, attempt.facts
    conn.execute("create temp table _stage_doc (_line_number integer, source text, doc jsonb) on commit drop")
    # (the typed text view below is an unlogged table so the rule checks can run in parallel)
    staged = 0
    with conn.cursor().copy("copy _stage_doc from stdin") as copy:
        for lineno, raw in decoded_lines(feed, path, facts):
            if odd := _odd_line(feed, facts, lineno):
                quarantined.append(Quarantined(lineno, odd[0], None, odd[1], raw))
                continue
            try:
                doc = parse_json_line(raw)
            except ValueError as err:
                quarantined.append(Quarantined(lineno, "BAD_JSON", None, f"not JSON: {err}", raw))
                continue
            if not isinstance(doc, dict):
                quarantined.append(Quarantined(lineno, "BAD_JSON", None, "not a JSON object", raw))
                continue
            if _JSONB_SUSPECT.search(raw) and not _jsonb_storable(doc):
                detail = "a \\u0000 or unpaired surrogate escape, which PostgreSQL's jsonb cannot store"
                quarantined.append(Quarantined(lineno, "BAD_JSON", None, detail, raw))
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
    extra = sql.SQL("{} as _extra_doc").format(jsonl_extra(feed))
    conn.execute(
        sql.SQL(
            "create unlogged table {} as select _line_number, source as _source_line, {}, {} from _stage_doc"
        ).format(stage, sql.SQL(", ").join(cols), extra)
    )
    return feed.column_names, staged
