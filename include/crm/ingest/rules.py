"""The loader's rules, defined once for both load paths.

Reason codes and file rules are enums whose members equal the registry's lists (a test
holds them together). Value shapes are regular expressions that both paths apply: the
row-by-row path in PostgreSQL (anchored, ``~``), the clean path in Python while
PostgreSQL copies. They exist because PostgreSQL's own input functions accept more than
the source systems mean: ``01/02/2026`` as a date, and since PostgreSQL 16 ``0x10``,
``0o17``, ``0b1`` and ``1_000`` as integers, ``NaN`` and ``Infinity`` as numerics.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum

from crm.dates import BANK_TZ

# The bank's local time zone: a local timestamp's "end of the business day".
LOCAL_TZ = BANK_TZ.key

DATE_SHAPE = r"\d{4}-\d{2}-\d{2}"
TIMESTAMP_SHAPE = DATE_SHAPE + r"[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
TIMESTAMPTZ_SHAPE = TIMESTAMP_SHAPE + r"(?:Z|[+-]\d{2}(?::?\d{2})?)"
INTEGER_SHAPE = r"[+-]?\d+"
NUMERIC_SHAPE = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
# Registry type -> the only spelling of a value of that type the loader accepts.
SHAPES = {
    "date": DATE_SHAPE,
    "timestamp": TIMESTAMP_SHAPE,
    "timestamptz": TIMESTAMPTZ_SHAPE,
    "int": INTEGER_SHAPE,
    "bigint": INTEGER_SHAPE,
    "numeric": NUMERIC_SHAPE,
}


def anchored(shape: str) -> str:
    """The shape as a whole-value regular expression (PostgreSQL's ``~`` searches)."""
    return f"^(?:{shape})$"


# Codecs (Python's names) in which every ASCII byte string decodes to itself.
ASCII_COMPATIBLE = frozenset({"utf-8", "ascii", "latin-1", "iso8859-1", "cp1252", "gbk", "gb18030", "big5"})
# Encodings in which every byte below 0x80 is the ASCII character it looks like (the
# delimiter, quote, digits and line ends), so their bytes can be checked undecoded. Not
# GBK: its second bytes reach into the ASCII range.
ASCII_SAFE = frozenset({"utf-8", "latin-1", "iso8859-1", "ascii"})
# Python codec name -> PostgreSQL client encoding, for COPY's ENCODING option.
PG_ENCODINGS = {
    "utf-8": "UTF8",
    "gbk": "GBK",
    "gb18030": "GB18030",
    "latin-1": "LATIN1",
    "iso8859-1": "LATIN1",
}

# JSON nested deeper than this is refused (BAD_JSON) on both paths: PostgreSQL's jsonb
# parser stops at its stack depth (StatementTooComplex), Python's at its recursion limit.
MAX_JSON_DEPTH = 64
_DEEP_CANDIDATE = re.compile(r"(?:[^{\[\n]*+[{\[]){" + str(MAX_JSON_DEPTH + 1) + "}")


def json_too_deep(line: str) -> bool:
    """True if the JSON text on ``line`` nests objects/arrays deeper than MAX_JSON_DEPTH.

    A line with fewer opening brackets than that cannot be (one regular-expression pass at
    C speed); only a suspect line is walked, brackets inside strings skipped.
    """
    if not _DEEP_CANDIDATE.match(line):
        return False
    depth, in_string, escaped = 0, False, False
    for ch in line:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif ch in "}]":
            depth -= 1
    return False


_DEEP_CANDIDATE_BYTES = re.compile(b"^" + _DEEP_CANDIDATE.pattern.encode(), re.MULTILINE)


def deep_json_in(block: bytes, encoding: str) -> bool:
    """True if a line of ``block`` (JSON Lines) nests deeper than MAX_JSON_DEPTH."""
    for match in _DEEP_CANDIDATE_BYTES.finditer(block):
        end = block.find(b"\n", match.start())
        line = block[match.start() : end if end >= 0 else len(block)]
        if json_too_deep(line.decode(encoding, errors="replace")):
            return True
    return False


def not_json(constant: str) -> None:
    """``json.loads``'s parse_constant: NaN and Infinity are not JSON (jsonb refuses them)."""
    raise ValueError(f"{constant} is not JSON (PostgreSQL's jsonb rejects it)")


def parse_json_line(line: str) -> object:
    """``json.loads`` with the loader's limits; ValueError names what is wrong."""
    if json_too_deep(line):
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(line, parse_constant=not_json)
    except RecursionError:
        raise ValueError("nested too deep to parse") from None


class RowReason(StrEnum):
    """Why a line went to quarantine (registry: ``row_reasons``)."""

    BAD_COLUMN_COUNT = "BAD_COLUMN_COUNT"
    BAD_JSON = "BAD_JSON"
    UNDECODABLE = "UNDECODABLE"
    NUL_BYTE = "NUL_BYTE"
    LINE_TOO_LONG = "LINE_TOO_LONG"
    MISSING_REQUIRED = "MISSING_REQUIRED"
    BAD_TYPE = "BAD_TYPE"
    BAD_PATTERN = "BAD_PATTERN"
    NOT_ACCEPTED = "NOT_ACCEPTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    FUTURE_DATE = "FUTURE_DATE"
    DUPLICATE_KEY = "DUPLICATE_KEY"
    UNKNOWN_REFERENCE = "UNKNOWN_REFERENCE"
    ERASED_SUBJECT = "ERASED_SUBJECT"


class FileRule(StrEnum):
    """Why a whole file was refused, or what was tolerated (registry: ``file_rules``)."""

    FILE_MISSING = "FILE_MISSING"
    NOT_A_REGULAR_FILE = "NOT_A_REGULAR_FILE"
    OUTSIDE_LANDING = "OUTSIDE_LANDING"
    FILE_UNREADABLE = "FILE_UNREADABLE"
    FILE_EMPTY = "FILE_EMPTY"
    FILE_TRUNCATED = "FILE_TRUNCATED"
    FILE_CHANGED = "FILE_CHANGED"
    ENCODING = "ENCODING"
    SCHEMA_MISSING_COLUMN = "SCHEMA_MISSING_COLUMN"
    SCHEMA_DUPLICATE_COLUMN = "SCHEMA_DUPLICATE_COLUMN"
    SCHEMA_BAD_HEADER = "SCHEMA_BAD_HEADER"
    SCHEMA_EXTRA_COLUMN = "SCHEMA_EXTRA_COLUMN"
    TOO_MANY_BAD_ROWS = "TOO_MANY_BAD_ROWS"
    DAY_EMPTIED = "DAY_EMPTIED"
    LOAD_ERROR = "LOAD_ERROR"
    DUPLICATE_DELIVERY = "DUPLICATE_DELIVERY"
