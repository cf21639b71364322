"""Named, countable defects injected into the generated feeds, and their ledger.

Every defect is written to ``<truth>/faults.jsonl`` with the feed, day, file, line
and the outcome ingestion must produce (a row reason code, a file rule, or a
tolerated drift), so tests can score the quarantine's precision and recall.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crm.feeds import Column, Feed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaultKind:
    level: str  # "row" or "file"
    expected: str  # registry row reason, file rule, or tolerated drift
    outcome: str  # "quarantined", "refused" or "tolerated"
    formats: tuple[str, ...] = ("csv", "jsonl")


FAULT_KINDS: dict[str, FaultKind] = {
    "missing_key": FaultKind("row", "MISSING_REQUIRED", "quarantined"),
    "duplicate_key": FaultKind("row", "DUPLICATE_KEY", "quarantined"),
    "negative_amount": FaultKind("row", "OUT_OF_RANGE", "quarantined"),
    "absurd_amount": FaultKind("row", "OUT_OF_RANGE", "quarantined"),
    "unknown_customer": FaultKind("row", "UNKNOWN_REFERENCE", "quarantined"),
    "unknown_account": FaultKind("row", "UNKNOWN_REFERENCE", "quarantined"),
    "bad_date": FaultKind("row", "BAD_TYPE", "quarantined"),
    "future_date": FaultKind("row", "FUTURE_DATE", "quarantined"),
    "bad_enum": FaultKind("row", "NOT_ACCEPTED", "quarantined"),
    "bad_column_count": FaultKind("row", "BAD_COLUMN_COUNT", "quarantined", ("csv",)),
    "bad_json": FaultKind("row", "BAD_JSON", "quarantined", ("jsonl",)),
    "wrong_encoding": FaultKind("file", "ENCODING_CONVERTED", "tolerated", ("csv",)),
    "bom": FaultKind("file", "BOM_STRIPPED", "tolerated", ("csv",)),
    "crlf": FaultKind("file", "CRLF", "tolerated", ("csv",)),
    "extra_column": FaultKind("file", "SCHEMA_EXTRA_COLUMN", "tolerated", ("csv",)),
    "truncated_last_line": FaultKind("file", "FILE_TRUNCATED", "refused"),
    "missing_column": FaultKind("file", "SCHEMA_MISSING_COLUMN", "refused", ("csv",)),
    "renamed_column": FaultKind("file", "SCHEMA_MISSING_COLUMN", "refused", ("csv",)),
    "empty_file": FaultKind("file", "FILE_EMPTY", "refused", ("csv",)),
    "missing_file": FaultKind("file", "FILE_MISSING", "refused"),
    "duplicate_delivery": FaultKind("file", "DUPLICATE_DELIVERY", "tolerated"),
    "late_partition": FaultKind("file", "LATE_PARTITION", "tolerated"),
}
ROW_KINDS = [k for k, v in FAULT_KINDS.items() if v.level == "row"]
FILE_KINDS = [k for k, v in FAULT_KINDS.items() if v.level == "file"]

# Feeds other feeds reference: a faulted row there would cascade into unledgered
# UNKNOWN_REFERENCE rows downstream, so only leaf feeds receive defects.
PROTECTED_FEEDS = frozenset({"core_customers", "core_accounts"})
HELD = "_held"
REDELIVERED = "_redelivered"


def parse_spec(spec: str | None) -> tuple[dict[str, float], dict[str, int]]:
    """``rate=0.01`` (every row kind at that rate per line, one file of each file kind) or
    ``missing_key=0.002,wrong_encoding=1,...`` (row kinds: rate per line; file kinds: count).

    Named kinds override ``rate``: ``rate=0.001,empty_file=0`` has no empty file."""
    rows: dict[str, float] = {}
    files: dict[str, int] = {}
    if not spec:
        return rows, files
    for part in spec.split(","):
        name, _, value = part.strip().partition("=")
        if name == "rate":
            for k in ROW_KINDS:
                rows.setdefault(k, float(value))
            for k in FILE_KINDS:
                files.setdefault(k, 1)
        elif name in FAULT_KINDS:
            if FAULT_KINDS[name].level == "row":
                rows[name] = float(value)
            else:
                files[name] = int(value)
            if (rows.get(name) or 0) < 0 or (files.get(name) or 0) < 0:
                raise ValueError(f"fault {name}={value}: rates and counts cannot be negative")
        else:
            raise ValueError(f"unknown fault kind {name!r}; kinds: rate, {', '.join(FAULT_KINDS)}")
    total = sum(rows.values())
    if total > 0.5:
        raise ValueError(f"row fault rates add up to {total:.2f} of all lines; keep them under 0.5")
    return {k: v for k, v in rows.items() if v > 0}, {k: v for k, v in files.items() if v > 0}


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


class FaultInjector:
    """Applies the spec's defects file by file and keeps the ledger."""

    def __init__(
        self, spec: str | None, seed: int, out: Path, days: list[dt.date], feeds: list[Feed]
    ) -> None:
        self.rows, files = parse_spec(spec)
        self.out = out
        self.seed = seed
        self.ledger: list[dict] = []
        rng = np.random.default_rng([seed, 777])
        self.file_faults: dict[tuple[str, dt.date], str] = {}
        leaf = [f for f in feeds if f.name not in PROTECTED_FEEDS]
        # File-level defects avoid the first day (nothing to be late against) and never stack.
        for kind, count in files.items():
            fmt = FAULT_KINDS[kind].formats
            if kind == "wrong_encoding":
                candidates = [f for f in leaf if f.tolerated_encodings]
            else:
                candidates = [f for f in leaf if f.format in fmt]
            for _ in range(count):
                for _attempt in range(50):
                    feed = candidates[rng.integers(0, len(candidates))]
                    # A late partition needs a later day that arrives before it.
                    last = len(days) - 1 if kind == "late_partition" and len(days) > 2 else len(days)
                    day = days[rng.integers(min(1, len(days) - 1), last)]
                    if (feed.name, day) not in self.file_faults:
                        self.file_faults[(feed.name, day)] = kind
                        break

    @property
    def active(self) -> bool:
        return bool(self.rows or self.file_faults)

    def apply(self, feed: Feed, day: dt.date, path: Path) -> None:
        file_kind = self.file_faults.get((feed.name, day))
        refusing = file_kind is not None and FAULT_KINDS[file_kind].outcome == "refused"
        if self.rows and feed.name not in PROTECTED_FEEDS and not refusing:
            self._row_faults(feed, day, path)
        if file_kind:
            self._file_fault(file_kind, feed, day, path)

    # -- rows ------------------------------------------------------------------
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

    # -- files -----------------------------------------------------------------
    def _file_fault(self, kind: str, feed: Feed, day: dt.date, path: Path) -> None:
        rel = str(path.relative_to(self.out))
        data = path.read_bytes()
        if kind == "wrong_encoding":
            text = data.decode("utf-8")
            if text.isascii():
                busy = {e["line"] for e in self.ledger if e["file"] == rel}
                text = _with_chinese_remark(feed, text, busy | {x - 1 for x in busy})
                if text is None:  # no record to carry a remark: GBK would equal UTF-8
                    log.warning("wrong_encoding skipped for %s: no record to carry non-ASCII text", rel)
                    return
            path.write_bytes(text.encode("gbk"))
        elif kind == "bom":
            path.write_bytes(b"\xef\xbb\xbf" + data)
        elif kind == "crlf":
            path.write_bytes(data.replace(b"\n", b"\r\n"))
        elif kind == "extra_column":
            lines = data.decode("utf-8").splitlines()
            d = feed.delimiter
            lines = [lines[0] + f"{d}source_system"] + [x + f"{d}CBS" for x in lines[1:]]
            path.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
        elif kind in ("missing_column", "renamed_column"):
            lines = data.decode("utf-8").splitlines()
            names = feed.column_names
            victim = next(c.name for c in reversed(feed.columns) if c.name not in feed.key)
            pos = names.index(victim)
            rows = list(csv.reader(lines, delimiter=feed.delimiter, quotechar=feed.quotechar))
            if kind == "missing_column":
                rows = [r[:pos] + r[pos + 1 :] for r in rows]
            else:
                rows[0][pos] = victim + "_v2"
            path.write_text("".join(_csv_line(r, feed) + "\n" for r in rows), encoding="utf-8")
        elif kind == "truncated_last_line":
            body = data.rstrip(b"\n")
            last = body.rfind(b"\n")
            cut = last + 1 + max(1, (len(body) - last - 1) // 2)
            path.write_bytes(body[:cut])
        elif kind == "empty_file":
            path.write_bytes(b"")
        elif kind == "missing_file":
            path.unlink()
        elif kind == "duplicate_delivery":
            copy = self.out / REDELIVERED / feed.name / day.isoformat() / feed.file
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
        elif kind == "late_partition":
            held = self.out / HELD / feed.name / day.isoformat()
            held.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path.parent), str(held))
        self._log(feed, day, rel, None, kind)

    def _log(self, feed: Feed, day: dt.date, rel: str, line: int | None, kind: str) -> None:
        fk = FAULT_KINDS[kind]
        self.ledger.append(
            {
                "feed": feed.name,
                "day": day.isoformat(),
                "file": rel,
                "line": line,
                "kind": kind,
                "level": fk.level,
                "expected": fk.expected,
                "outcome": fk.outcome,
            }
        )


def _csv_line(fields: list[str], feed: Feed) -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=feed.delimiter, quotechar=feed.quotechar, lineterminator="").writerow(fields)
    return buf.getvalue()


def _with_chinese_remark(feed: Feed, text: str, avoid: set[int]) -> str | None:
    """Give one clean record a Chinese remark so a GBK file really differs from UTF-8.

    ``avoid``: line numbers of faulted records and of originals of duplicated ones."""
    lines = text.split("\n")
    if "remark" not in feed.column_names:
        return None
    for i in range(1, len(lines)):
        if lines[i] and i + 1 not in avoid:
            fields = next(csv.reader([lines[i]], delimiter=feed.delimiter, quotechar=feed.quotechar))
            fields[feed.column_names.index("remark")] = "客户要求回电"
            lines[i] = _csv_line(fields, feed)
            return "\n".join(lines)
    return None
