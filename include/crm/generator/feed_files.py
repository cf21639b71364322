"""A delivered file as text records (:class:`_Table`: read, edit, write back in the feed's
format) and the control record the source sends beside it (:func:`control_record`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from crm.feeds import Column, Feed

CONTROL_SUFFIX = ".control.json"
PLAIN_DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def _csv_line(fields: list[str], feed: Feed) -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=feed.delimiter, quotechar=feed.quotechar, lineterminator="").writerow(fields)
    return buf.getvalue()


def control_path(path: Path) -> Path:
    return path.with_name(path.name + CONTROL_SUFFIX)


def control_record(feed: Feed, path: Path) -> dict:
    """What the source's control record says of ``path``: its data lines and, per money
    column of the registry's ``control`` block, the sum of the plain decimal values by
    currency, to the cent (a decimal string)."""
    table = _table(feed, path)
    sums: dict[str, dict[str, Decimal]] = {}
    if feed.control is not None:
        header = table.header
        cur = header.index(feed.control.currency) if feed.control.currency in header else None
        for col in feed.control.amounts:
            if col not in header:
                continue
            pos = header.index(col)
            totals = sums.setdefault(col, {})
            for r in table.records:
                if len(r) != len(header) or not PLAIN_DECIMAL.match(r[pos]):
                    continue
                key = r[cur] if cur is not None else ""
                totals[key] = totals.get(key, Decimal(0)) + Decimal(r[pos])
    return {
        "file": path.name,
        "rows": table.lines,
        "sums": {
            col: {k: str(v.quantize(Decimal("0.01"))) for k, v in sorted(by.items())}
            for col, by in sums.items()
        },
    }


def write_control(feed: Feed, path: Path) -> Path | None:
    if not path.exists():
        return None
    target = control_path(path)
    target.write_text(json.dumps(control_record(feed, path), sort_keys=True) + "\n", encoding="utf-8")
    return target


@dataclass
class _Table:
    """A delivered file as text records (CSV fields, or JSON values as the CSV would carry
    them), editable and writable back in the feed's format."""

    feed: Feed
    delimiter: str
    quotechar: str
    header: list[str]
    records: list[list[str]] = field(default_factory=list)
    docs: list[dict] | None = None  # JSON Lines: the documents behind the records
    lines: int = 0  # data lines as delivered (unreadable ones included)

    @property
    def rows(self) -> int:
        return len(self.records)

    def write(self, path: Path) -> None:
        if self.docs is None:
            text = "".join(_csv_line(r, self.feed) + "\n" for r in [self.header, *self.records])
        else:
            out = []
            for rec in self.records:
                doc = {}
                for name, value in zip(self.header, rec, strict=True):
                    col = self.feed.column(name)
                    doc[name] = None if value == "" else _json_value(col, value)
                out.append(json.dumps(doc, ensure_ascii=False) + "\n")
            text = "".join(out)
        path.write_text(text, encoding="utf-8")


def _table(feed: Feed, path: Path) -> _Table:
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if feed.format == "csv":
        d, q = feed.delimiter, feed.quotechar
        rows = list(csv.reader(lines, delimiter=d, quotechar=q))
        header = rows[0] if rows else feed.column_names
        return _Table(feed, d, q, header, rows[1:], None, max(len(lines) - 1, 0))
    header = feed.column_names
    records, docs = [], []
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            docs.append(doc)
            records.append([_json_text(doc.get(c)) for c in header])
    return _Table(feed, ",", '"', header, records, docs, len(lines))


def _json_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json_value(col: Column, value: str) -> object:
    if col.type in ("int", "bigint"):
        return int(value)
    if col.type == "numeric":
        return json.loads(value)
    if col.type == "boolean":
        return value == "true"
    return value
