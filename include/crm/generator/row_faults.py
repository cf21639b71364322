"""Row-level defects: each line of a leaf feed's file breaks one row rule at the spec's
rate (:class:`RowFaults`, mixed into :class:`crm.generator.faults.FaultInjector`).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import zlib
from pathlib import Path

import numpy as np

from crm.feeds import Column, Feed
from crm.generator.fault_kinds import FAULT_KINDS
from crm.generator.feed_files import _csv_line


def _applicable(kind: str, feed: Feed) -> list[Column]:
    """Columns of ``feed`` a row fault of ``kind`` can be applied to."""
    cols = feed.columns
    if kind == "missing_key":
        return [feed.column(feed.key[0])]
    if kind == "negative_amount":
        return [c for c in cols if c.type in ("int", "bigint", "numeric") and c.min == 0]
    if kind == "absurd_amount":
        return [c for c in cols if c.type in ("int", "bigint", "numeric") and c.max is not None]
    if kind == "unknown_customer":
        return [c for c in cols if c.references == "core_customers.customer_id"]
    if kind == "unknown_account":
        return [c for c in cols if c.references == "core_accounts.account_id"]
    if kind == "bad_date":
        return [c for c in cols if c.type in ("date", "timestamp", "timestamptz")]
    if kind == "future_date":
        return [c for c in cols if c.not_future and c.type in ("date", "timestamp", "timestamptz")]
    if kind == "bad_enum":
        return [c for c in cols if c.accepted]
    return list(cols)  # duplicate_key, bad_column_count, bad_json: the row as a whole


def _corrupt(kind: str, col: Column, value: str, day: dt.date, serial: int = 0) -> str:
    """The faulty value; ``serial`` (unique within a file) keeps unknown ids distinct, so
    two unknown references in one file never also collide as duplicate keys."""
    if kind == "missing_key":
        return ""
    if kind == "negative_amount":
        return "-" + (value.lstrip("-") if value not in ("", "0", "0.00") else "1")
    if kind == "absurd_amount":
        return str(int((col.max or 0) * 1000) + 7)
    if kind == "unknown_customer":
        return f"C99{serial % 10**7:07d}"  # customer numbers never reach 990,000,000
    if kind == "unknown_account":
        return f"A99{serial % 10**9:09d}"
    if kind == "bad_date":
        return {"date": "2026-02-30", "timestamp": "2026-02-30 10:00:00"}.get(
            col.type, "2026-02-30T10:00:00Z"
        )
    if kind == "future_date":
        later = day + dt.timedelta(days=400)
        return {"date": later.isoformat(), "timestamp": f"{later} 10:00:00"}.get(
            col.type, f"{later}T02:00:00Z"
        )
    if kind == "bad_enum":
        return "ZZZ"
    raise ValueError(kind)


class RowFaults:
    """Row defects of :class:`crm.generator.faults.FaultInjector` (``self.rows``: rate per kind)."""

    def _row_faults(self, feed: Feed, day: dt.date, path: Path) -> None:
        rng = np.random.default_rng([self.seed, 778, day.toordinal(), zlib.crc32(feed.name.encode())])
        kinds = [
            k
            for k in self.rows
            if feed.format in FAULT_KINDS[k].formats
            and (k in ("duplicate_key", "bad_column_count", "bad_json") or _applicable(k, feed))
        ]
        if not kinds:
            return
        total = sum(self.rows[k] for k in kinds)
        probs = np.array([self.rows[k] for k in kinds]) / total
        rel = str(path.relative_to(self.out))
        text = path.read_text(encoding="utf-8").splitlines(keepends=False)
        header = 1 if feed.format == "csv" else 0
        out_lines: list[str] = text[:header]
        for line in text[header:]:
            out_lines.append(line)
            if rng.random() >= total:
                continue
            kind = kinds[int(rng.choice(len(kinds), p=probs))]
            if kind == "duplicate_key":
                out_lines.append(line)
                self._log(feed, day, rel, len(out_lines), kind)
                continue
            changed = self._mutate(kind, feed, day, line, rng)
            if changed is not None:
                out_lines[-1] = changed
                self._log(feed, day, rel, len(out_lines), kind)
        path.write_text("".join(x + "\n" for x in out_lines), encoding="utf-8")

    def _mutate(self, kind: str, feed: Feed, day: dt.date, line: str, rng: np.random.Generator) -> str | None:
        if feed.format == "csv":
            fields = next(csv.reader([line], delimiter=feed.delimiter, quotechar=feed.quotechar))
            if kind == "bad_column_count":
                return _csv_line(fields[:-1], feed)
            names = feed.column_names
            cols = [
                c
                for c in _applicable(kind, feed)
                if fields[names.index(c.name)] != "" or kind == "missing_key"
            ]
            if not cols:
                return None
            col = cols[int(rng.integers(0, len(cols)))]
            pos = names.index(col.name)
            fields[pos] = _corrupt(kind, col, fields[pos], day, len(self.ledger))
            return _csv_line(fields, feed)
        doc = json.loads(line)
        if kind == "bad_json":
            return line[:-1]
        cols = [
            c for c in _applicable(kind, feed) if doc.get(c.name) not in (None, "") or kind == "missing_key"
        ]
        if not cols:
            return None
        col = cols[int(rng.integers(0, len(cols)))]
        value = _corrupt(kind, col, str(doc.get(col.name) or ""), day, len(self.ledger))
        if col.type in ("int", "bigint", "numeric") and value:
            doc[col.name] = json.loads(value) if value.lstrip("-").replace(".", "", 1).isdigit() else value
        else:
            doc[col.name] = value or None
        return json.dumps(doc, ensure_ascii=False)
