"""A small, independent reading of the registry's rules, for testing generated files.

It re-implements (in plain Python, without the warehouse) what ingestion checks per
line, so the generator can be tested on its own: a clean bank breaks no rule, and a
faulted bank breaks exactly the rules its ledger lists, on exactly those lines.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from crm.feeds import Column, Feed, Registry

LOCAL = ZoneInfo("Asia/Shanghai")
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
INTEGER = re.compile(r"^-?\d+$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
TIMESTAMPTZ = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def _local_date(col: Column, value: str) -> dt.date:
    if col.type == "date":
        return dt.date.fromisoformat(value)
    if col.type == "timestamp":
        return dt.datetime.fromisoformat(value).date()
    utc = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return utc.astimezone(LOCAL).date()


def check_value(col: Column, value: str, day: dt.date) -> str | None:
    """The first rule ``value`` (text as in the file, '' = null) breaks, or None."""
    if value == "":
        return "MISSING_REQUIRED" if col.required else None
    if col.type in ("int", "bigint", "numeric"):
        if not (INTEGER if col.type != "numeric" else NUMBER).match(value):
            return "BAD_TYPE"
        number = float(value)
        if (col.min is not None and number < col.min) or (col.max is not None and number > col.max):
            return "OUT_OF_RANGE"
    elif col.type in ("date", "timestamp", "timestamptz"):
        shape = {"date": DATE, "timestamp": TIMESTAMP, "timestamptz": TIMESTAMPTZ}[col.type]
        try:
            when = _local_date(col, value)
        except ValueError:
            return "BAD_TYPE"
        if not shape.match(value):
            return "BAD_TYPE"
        if col.not_future and when > day:
            return "FUTURE_DATE"
    elif col.type == "boolean" and value not in ("true", "false"):
        return "BAD_TYPE"
    if col.pattern and not re.search(col.pattern, value):
        return "BAD_PATTERN"
    if col.accepted and value not in col.accepted:
        return "NOT_ACCEPTED"
    return None


def _json_text(col: Column, value: object) -> str | None:
    """JSON value as the text the CSV form would carry; None if its JSON type is wrong."""
    if value is None:
        return ""
    if col.type == "boolean":
        return ("true" if value else "false") if isinstance(value, bool) else None
    if col.type in ("int", "bigint"):
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else None
    if col.type == "numeric":
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    return value if isinstance(value, str) else None


@dataclass
class Known:
    """Keys of the referenced feeds delivered so far (what raw holds by a day)."""

    values: dict[str, set[str]] = field(default_factory=dict)

    def add(self, feed: str, column: str, value: str) -> None:
        self.values.setdefault(f"{feed}.{column}", set()).add(value)

    def has(self, ref: str, value: str) -> bool:
        return value in self.values.get(ref, set())


def records(feed: Feed, path: Path) -> Iterator[tuple[int, dict[str, str] | None, str]]:
    """(physical line number, record as text or None if unreadable, reason if unreadable)."""
    text = path.read_bytes().decode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    start = 2 if feed.format == "csv" else 1
    header = feed.column_names
    if feed.format == "csv":
        header = next(csv.reader([lines[0]], delimiter=feed.delimiter, quotechar=feed.quotechar))
    for number, line in enumerate(lines[start - 1 :], start=start):
        if feed.format == "csv":
            fields = next(csv.reader(io.StringIO(line), delimiter=feed.delimiter, quotechar=feed.quotechar))
            if len(fields) != len(header):
                yield number, None, "BAD_COLUMN_COUNT"
                continue
            yield number, dict(zip(header, fields, strict=True)), ""
        else:
            try:
                doc = json.loads(line)
            except ValueError:
                yield number, None, "BAD_JSON"
                continue
            if not isinstance(doc, dict):
                yield number, None, "BAD_JSON"
                continue
            record = {}
            for col in feed.columns:
                value = _json_text(col, doc.get(col.name))
                record[col.name] = "\x00BAD_TYPE" if value is None else value
            yield number, record, ""


def check_file(feed: Feed, path: Path, day: dt.date, known: Known) -> dict[int, str]:
    """{line: reason} for every line of ``path`` that breaks a rule (one reason per line)."""
    problems: dict[int, str] = {}
    seen: set[tuple[str, ...]] = set()
    for number, record, reason in records(feed, path):
        if record is None:
            problems[number] = reason
            continue
        for col in feed.columns:
            value = record.get(col.name, "")
            found = "BAD_TYPE" if value == "\x00BAD_TYPE" else check_value(col, value, day)
            if found:
                problems[number] = found
                break
        if number in problems:
            continue
        for col in feed.columns:
            value = record.get(col.name, "")
            if col.references and value and not known.has(col.references, value):
                problems[number] = "UNKNOWN_REFERENCE"
                break
        if number in problems:
            continue
        # As ingestion does: a repeated key among otherwise clean rows, the first one wins.
        key = tuple(record[k] for k in feed.key)
        if key in seen:
            problems[number] = "DUPLICATE_KEY"
            continue
        seen.add(key)
    return problems


def remember(feed: Feed, path: Path, registry: Registry, known: Known) -> None:
    """Record the keys a loaded file makes known to later references."""
    wanted = {
        c.references.split(".")[1]
        for f in registry.feeds.values()
        for c in f.columns
        if c.references and c.references.startswith(feed.name + ".")
    }
    if not wanted:
        return
    for _, record, _ in records(feed, path):
        if record is not None:
            for column in wanted:
                if record.get(column):
                    known.add(feed.name, column, record[column])
