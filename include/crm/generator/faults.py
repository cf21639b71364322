"""Named, countable defects injected into the generated feeds, and their ledger.

Every defect is written to ``<truth>/faults.jsonl`` with the feed, day, file, line
and the outcome ingestion must produce (a row reason code, a file rule, or a
tolerated drift), so tests can score the quarantine's precision and recall.

Three levels:

- ``row`` kinds break one line's row rule (rate per line, leaf feeds only);
- ``file`` kinds break or drift a whole file (a count of files);
- ``dataset`` kinds break no row or file rule at all: every line stays valid, but the
  day's data is wrong as a whole, and a data-quality gate must notice. Their ledger
  entries carry ``level: "dataset"``, ``outcome: "flagged"``, ``line: null`` and the
  ``gate`` (raw, recon or mart), the ``check`` that must catch them (also in
  ``expected``) and its ``severity``, plus kind-specific details:

  ========================  ======  ================================  ========  ==============================
  kind                      gate    check                             severity  details
  ========================  ======  ================================  ========  ==============================
  ``volume_drop``           raw     raw.volume                        critical  rows_before, rows_after
  ``unit_shift``            raw     raw.median:<column>               critical  column, factor (100)
  ``stale_repeat``          raw     raw.stale_repeat                  critical  repeated_from (the day copied)
  ``null_spike``            raw     raw.null_rate:<column>            warning   column, null_share_before/after
  ``control_mismatch``      recon   recon.amounts                     critical  column, currency, control_sum,
                                                                                file_sum
  ``balance_break``         recon   recon.balance_roll_forward        critical  account_id, expected_balance,
                                                                                actual_balance
  ``segment_collapse``      mart    mart.segment_share_shift          warning   segment, customers, accounts,
                                                                                share_before, share_after
  ========================  ======  ================================  ========  ==============================

  A dataset kind is named with a count of 0 or 1 (``volume_drop=1``; ``rate=`` does not
  include them) and hits one file on the *dataset day*: the last generated day, or
  ``dataset_day=YYYY-MM-DD`` in the spec. Gates judge a day against its history, so
  that day should come after a week or so of clean days; it must not be the first day
  (``stale_repeat`` and ``balance_break`` need the day before). On the dataset day and
  the day before, no row or file defect is injected, so a dataset defect is the only
  thing wrong in those files. The channel-feed kinds (volume_drop, unit_shift,
  stale_repeat, null_spike) each take a different non-core feed, chosen from that
  day's data; balance_break and segment_collapse change ``core_balances`` (and
  segment_collapse books the outflows in ``core_transactions``, so balances still roll
  forward); a balance they change stays changed on later days, as a real break would.

Control records: beside every delivered file the source sends ``<file>.control.json``
(:func:`control_record`): ``{"file", "rows", "sums"}``, computed after row and dataset
defects and before file defects (those happen in transport: a truncated or emptied file
keeps the control record of what was sent; a held partition or a redelivery carries its
control record along; a missing file has none). Only ``control_mismatch`` makes a
control record disagree with its file.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import re
import shutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np

from crm.feeds import Column, Feed
from crm.quality.history import MIN_SAMPLE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaultKind:
    level: str  # "row", "file" or "dataset"
    expected: str  # registry row reason, file rule, tolerated drift, or the gate's check
    outcome: str  # "quarantined", "refused", "tolerated" or "flagged" (by a gate)
    formats: tuple[str, ...] = ("csv", "jsonl")
    gate: str | None = None  # dataset kinds: the gate that must catch it
    severity: str | None = None  # dataset kinds: "critical" or "warning"

    def check(self, column: str | None = None) -> str:
        """The gate check's name; ``<column>`` in it is filled in."""
        return self.expected.replace("<column>", column) if column else self.expected


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
    "volume_drop": FaultKind("dataset", "raw.volume", "flagged", gate="raw", severity="critical"),
    "unit_shift": FaultKind("dataset", "raw.median:<column>", "flagged", gate="raw", severity="critical"),
    "stale_repeat": FaultKind("dataset", "raw.stale_repeat", "flagged", gate="raw", severity="critical"),
    "null_spike": FaultKind("dataset", "raw.null_rate:<column>", "flagged", gate="raw", severity="warning"),
    "control_mismatch": FaultKind("dataset", "recon.amounts", "flagged", gate="recon", severity="critical"),
    "balance_break": FaultKind(
        "dataset", "recon.balance_roll_forward", "flagged", gate="recon", severity="critical"
    ),
    "segment_collapse": FaultKind(
        "dataset", "mart.segment_share_shift", "flagged", gate="mart", severity="warning"
    ),
}
ROW_KINDS = [k for k, v in FAULT_KINDS.items() if v.level == "row"]
FILE_KINDS = [k for k, v in FAULT_KINDS.items() if v.level == "file"]
DATASET_KINDS = [k for k, v in FAULT_KINDS.items() if v.level == "dataset"]
CONTROL_SUFFIX = ".control.json"
PLAIN_DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
# Sources whose feeds carry the bank's books: dataset defects there go through
# balance_break / segment_collapse / control_mismatch, never the channel-feed kinds.
BOOK_SOURCES = frozenset({"core", "treasury"})
VOLUME_KEPT = 0.4  # volume_drop keeps this share of the rows
NULL_SHARE = 0.9  # null_spike empties this share of the column
TRB_TIERS = (("Premier", 1_000_000.0), ("Advance", 100_000.0), ("Personal", float("-inf")))

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
        if name == "dataset_day":
            dt.date.fromisoformat(value)  # checked against the days by FaultInjector
            continue
        if name in DATASET_KINDS:
            if value not in ("0", "1"):
                raise ValueError(f"fault {name}={value}: a dataset fault kind is 0 or 1 (one file)")
            files[name] = int(value)
            continue
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
            raise ValueError(
                f"unknown fault kind {name!r}; kinds: rate, dataset_day, {', '.join(FAULT_KINDS)}"
            )
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
        self.days = days
        self.ledger: list[dict] = []
        self.dataset = [k for k in DATASET_KINDS if files.pop(k, 0)]
        self.dataset_day = _dataset_day(spec, days) if self.dataset else None
        # The dataset day and the day before carry no row or file defects.
        self.reserved: set[tuple[str, dt.date]] = set()
        if self.dataset_day is not None:
            before = self.dataset_day - dt.timedelta(days=1)
            self.reserved = {(f.name, x) for f in feeds for x in (self.dataset_day, before)}
        # Balance changes that stay: account -> (ledger, available) delta from the dataset day on.
        self.shifts: dict[str, Decimal] = {}
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
                    if (feed.name, day) in self.reserved:
                        continue
                    if (feed.name, day) not in self.file_faults:
                        self.file_faults[(feed.name, day)] = kind
                        break

    @property
    def active(self) -> bool:
        return bool(self.rows or self.file_faults or self.dataset)

    def apply_day(self, day: dt.date, paths: dict[Feed, Path]) -> None:
        """Every defect of ``day`` in order, and the control records: row defects, dataset
        defects, control records (of the files as the source sends them), control defects,
        then file (transport) defects."""
        for feed, path in paths.items():
            if feed.name == "core_balances" and self.shifts and day > (self.dataset_day or day):
                self._shift_balances(feed, path)
            self.apply_rows(feed, day, path)
        if day == self.dataset_day:
            self._dataset_faults(day, paths)
        for feed, path in paths.items():
            write_control(feed, path)
        if day == self.dataset_day and "control_mismatch" in self.dataset:
            self._control_mismatch(day, paths)
        for feed, path in paths.items():
            self.apply_file(feed, day, path)

    def apply(self, feed: Feed, day: dt.date, path: Path) -> None:
        """Row then file defects of one file (no control record, no dataset defects)."""
        self.apply_rows(feed, day, path)
        self.apply_file(feed, day, path)

    def apply_rows(self, feed: Feed, day: dt.date, path: Path) -> None:
        file_kind = self.file_faults.get((feed.name, day))
        refusing = file_kind is not None and FAULT_KINDS[file_kind].outcome == "refused"
        reserved = (feed.name, day) in self.reserved
        if self.rows and feed.name not in PROTECTED_FEEDS and not refusing and not reserved:
            self._row_faults(feed, day, path)

    def apply_file(self, feed: Feed, day: dt.date, path: Path) -> None:
        file_kind = self.file_faults.get((feed.name, day))
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
            control_path(path).unlink(missing_ok=True)
        elif kind == "duplicate_delivery":
            copy = self.out / REDELIVERED / feed.name / day.isoformat() / feed.file
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
            if control_path(path).exists():
                shutil.copyfile(control_path(path), control_path(copy))
        elif kind == "late_partition":
            held = self.out / HELD / feed.name / day.isoformat()
            held.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path.parent), str(held))
        self._log(feed, day, rel, None, kind)

    def _log(
        self,
        feed: Feed,
        day: dt.date,
        rel: str,
        line: int | None,
        kind: str,
        column: str | None = None,
        **details: object,
    ) -> None:
        fk = FAULT_KINDS[kind]
        entry = {
            "feed": feed.name,
            "day": day.isoformat(),
            "file": rel,
            "line": line,
            "kind": kind,
            "level": fk.level,
            "expected": fk.check(column),
            "outcome": fk.outcome,
        }
        if fk.level == "dataset":
            entry |= {"gate": fk.gate, "check": fk.check(column), "severity": fk.severity}
            if column:
                entry["column"] = column
        if set(details) & set(entry):
            raise ValueError(f"ledger details would overwrite {set(details) & set(entry)}")
        self.ledger.append(entry | details)

    # -- dataset ---------------------------------------------------------------
    def _dataset_faults(self, day: dt.date, paths: dict[Feed, Path]) -> None:
        rng = np.random.default_rng([self.seed, 779, day.toordinal()])
        by_name = {f.name: (f, p) for f, p in paths.items()}
        # Channel feeds, busiest first (ties: registry order); each kind takes its own feed,
        # the most demanding kinds first (a money column with room; an optional column).
        channel = [(f, p) for f, p in paths.items() if f.source not in BOOK_SOURCES and p.exists()]
        channel.sort(key=lambda fp: -_table(fp[0], fp[1]).rows)
        used: set[str] = set()

        def free(ok: Callable[[Feed, _Table], bool] = lambda f, t: True) -> tuple[Feed, Path, _Table] | None:
            for f, p in channel:
                if f.name not in used:
                    table = _table(f, p)
                    if table.rows and ok(f, table):
                        used.add(f.name)
                        return f, p, table
            return None

        if "segment_collapse" in self.dataset:
            self._segment_collapse(day, by_name, rng)
        if "balance_break" in self.dataset:
            self._balance_break(day, by_name, rng)
        if "unit_shift" in self.dataset:
            picked = free(lambda f, t: t.rows >= MIN_SAMPLE and _shiftable(f, t) is not None)
            if picked is None:
                raise RuntimeError(f"unit_shift: no channel feed of {day} has a money column with room x100")
            feed, path, table = picked
            col = _shiftable(feed, table)
            pos = table.header.index(col)
            for rec in table.records:
                if rec[pos] != "":
                    rec[pos] = _times_100(rec[pos])
            table.write(path)
            self._log(feed, day, self._rel(path), None, "unit_shift", col, factor=100)
        if "null_spike" in self.dataset:
            feed, path, table = _need(free(lambda f, t: _fillable(f, t) is not None), "null_spike", day)
            col = _fillable(feed, table)
            pos = table.header.index(col)
            filled = [r for r in table.records if r[pos] != ""]
            before = 1 - len(filled) / table.rows
            for r in filled:
                if rng.random() < NULL_SHARE:
                    r[pos] = ""
            after = sum(r[pos] == "" for r in table.records) / table.rows
            table.write(path)
            self._log(
                feed,
                day,
                self._rel(path),
                None,
                "null_spike",
                col,
                null_share_before=round(before, 4),
                null_share_after=round(after, 4),
            )
        if "volume_drop" in self.dataset:
            feed, path, table = _need(free(), "volume_drop", day)
            before = table.rows
            table.records = table.records[: max(1, int(before * VOLUME_KEPT))]
            table.write(path)
            self._log(
                feed, day, self._rel(path), None, "volume_drop", rows_before=before, rows_after=table.rows
            )
        if "stale_repeat" in self.dataset:
            prev = day - dt.timedelta(days=1)

            def repeatable(f: Feed, t: _Table) -> bool:
                old = self.out / f.name / prev.isoformat() / f.file
                return old.exists() and old.stat().st_size > 0

            feed, path, _ = _need(free(repeatable), "stale_repeat", day)
            shutil.copyfile(self.out / feed.name / prev.isoformat() / feed.file, path)
            self._log(feed, day, self._rel(path), None, "stale_repeat", repeated_from=prev.isoformat())

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.out))

    def _control_mismatch(self, day: dt.date, paths: dict[Feed, Path]) -> None:
        for feed, path in paths.items():
            cpath = control_path(path)
            if feed.control is None or not cpath.exists():
                continue
            doc = json.loads(cpath.read_text())
            for col, by_currency in doc["sums"].items():
                if by_currency:
                    currency = sorted(by_currency)[0]
                    actual = by_currency[currency]
                    by_currency[currency] = str(Decimal(actual) + Decimal("100.00"))
                    cpath.write_text(json.dumps(doc, sort_keys=True) + "\n")
                    self._log(
                        feed,
                        day,
                        self._rel(path),
                        None,
                        "control_mismatch",
                        col,
                        currency=currency,
                        control_sum=by_currency[currency],
                        file_sum=actual,
                    )
                    return
        raise RuntimeError(f"control_mismatch: no file of {day} has money to total")

    def _balance_break(self, day: dt.date, by_name: dict, rng: np.random.Generator) -> None:
        feed, path = by_name["core_balances"]
        prev = self.out / feed.name / (day - dt.timedelta(days=1)).isoformat() / feed.file
        table = _table(feed, path)
        known = {r[1] for r in _table(feed, prev).records} if prev.exists() else set()
        pos = table.header.index("ledger_balance")
        acc = table.header.index("account_id")
        candidates = [r for r in table.records if r[acc] in known and r[acc] not in self.shifts]
        if not candidates:
            raise RuntimeError(f"balance_break: no account of {day} has a balance the day before")
        rec = candidates[int(rng.integers(0, len(candidates)))]
        expected = Decimal(rec[pos])
        delta = max(Decimal("1000.00"), (abs(expected) * Decimal("0.05")).quantize(Decimal("0.01")))
        self.shifts[rec[acc]] = delta
        _shift_record(table, rec, delta)
        table.write(path)
        self._log(
            feed,
            day,
            self._rel(path),
            None,
            "balance_break",
            account_id=rec[acc],
            expected_balance=str(expected),
            actual_balance=rec[pos],
        )

    def _segment_collapse(self, day: dt.date, by_name: dict, rng: np.random.Generator) -> None:
        """Most customers of the top populated TRB tier move 90 % of every positive balance
        to another bank on one day; the outflows are posted, so balances still roll forward."""
        bal_feed, bal_path = by_name["core_balances"]
        txn_feed, txn_path = by_name["core_transactions"]
        acc_feed = by_name["core_accounts"][0]
        owner: dict[str, str] = {}
        for folder in sorted((self.out / acc_feed.name).iterdir()):
            if dt.date.fromisoformat(folder.name) <= day:
                accounts = _table(acc_feed, folder / acc_feed.file)
                a, c = accounts.header.index("account_id"), accounts.header.index("customer_id")
                owner.update((r[a], r[c]) for r in accounts.records)
        fx_feed, fx_path = by_name["fx_rates"]
        fx = _table(fx_feed, fx_path)
        rate = {r[fx.header.index("currency")]: float(r[fx.header.index("rate")]) for r in fx.records}
        table = _table(bal_feed, bal_path)
        h = table.header
        acc, cur, led = h.index("account_id"), h.index("currency"), h.index("ledger_balance")

        def tiers() -> dict[str, str]:
            trb: dict[str, float] = {}
            for r in table.records:
                who = owner[r[acc]]
                trb[who] = trb.get(who, 0.0) + float(r[led]) * rate[r[cur]]
            return {who: next(name for name, low in TRB_TIERS if v >= low) for who, v in trb.items()}

        before = tiers()
        counts = {name: sum(t == name for t in before.values()) for name, _ in TRB_TIERS}
        segment = next(name for name, _ in TRB_TIERS if counts[name] >= 5)
        members = sorted(who for who, t in before.items() if t == segment)
        chosen = {who for who in members if rng.random() < 0.7}
        txns = _table(txn_feed, txn_path)
        t = txns.header
        d = self.days.index(day) + 1
        moved = 0
        for r in table.records:
            if owner[r[acc]] in chosen and Decimal(r[led]) > 0:
                out = min(
                    (Decimal(r[led]) * Decimal("0.9")).quantize(Decimal("0.01")), Decimal("49000000.00")
                )
                if out < Decimal("0.01"):
                    continue
                moved += 1
                self.shifts[r[acc]] = self.shifts.get(r[acc], Decimal(0)) - out
                _shift_record(table, r, -out)
                row = dict.fromkeys(t, "")
                row |= {
                    "txn_id": f"T{d:05d}{900_000_000 + moved:09d}",
                    "account_id": r[acc],
                    "posted_at": f"{day.isoformat()} 22:{moved // 60 % 60:02d}:{moved % 60:02d}",
                    "value_date": day.isoformat(),
                    "amount": f"{out:.2f}",
                    "currency": r[cur],
                    "direction": "D",
                    "txn_type": "transfer_out",
                    "channel": "online",
                    "counterparty_bank": "CMB",
                    "fee": f"{min(out * Decimal('0.001'), Decimal(50)):.2f}",
                }
                txns.records.append([row[x] for x in t])
        table.write(bal_path)
        txns.write(txn_path)
        after = tiers()
        n = len(before)
        share = {
            name: (sum(x == name for x in before.values()) / n, sum(x == name for x in after.values()) / n)
            for name, _ in TRB_TIERS
        }
        self._log(
            bal_feed,
            day,
            self._rel(bal_path),
            None,
            "segment_collapse",
            segment=segment,
            customers=len(chosen),
            accounts=moved,
            share_before={k: round(v[0], 4) for k, v in share.items()},
            share_after={k: round(v[1], 4) for k, v in share.items()},
        )

    def _shift_balances(self, feed: Feed, path: Path) -> None:
        """Carry the dataset day's balance changes into a later day's balances."""
        feed_table = _table(feed, path)
        acc = feed_table.header.index("account_id")
        for r in feed_table.records:
            if r[acc] in self.shifts:
                _shift_record(feed_table, r, self.shifts[r[acc]])
        feed_table.write(path)


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


# -- control records and whole-file edits ------------------------------------------
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


def _times_100(value: str) -> str:
    number = Decimal(value) * 100
    places = len(value.split(".")[1]) if "." in value else 0
    return f"{number:.{places}f}"


def _shift_record(table: _Table, rec: list[str], delta: Decimal) -> None:
    """Add ``delta`` to a balance record's ledger balance, and to its available balance."""
    for name in ("ledger_balance", "available_balance"):
        pos = table.header.index(name)
        if PLAIN_DECIMAL.match(rec[pos]):
            rec[pos] = f"{Decimal(rec[pos]) + delta:.2f}"


def _money_columns(feed: Feed) -> list[Column]:
    named = set(feed.control.amounts) if feed.control else set()
    return [c for c in feed.columns if c.name in named or c.type == "numeric"]


def _shiftable(feed: Feed, table: _Table) -> str | None:
    """A money column whose values, times 100, stay within the registry's bounds and
    whose median moves (not mostly zero)."""
    for col in _money_columns(feed):
        pos = table.header.index(col.name)
        values = sorted(Decimal(r[pos]) for r in table.records if PLAIN_DECIMAL.match(r[pos]))
        if not values or values[len(values) // 2] <= 0:
            continue
        if (col.max is None or values[-1] * 100 <= Decimal(str(col.max))) and (
            col.min is None or values[0] * 100 >= Decimal(str(col.min))
        ):
            return col.name
    return None


def _fillable(feed: Feed, table: _Table) -> str | None:
    """The optional column that is most often filled (at least 90 % of rows, MIN_SAMPLE rows)."""
    if table.rows < MIN_SAMPLE:
        return None
    best, share = None, 0.9
    for col in feed.columns:
        if col.required or col.name in feed.key:
            continue
        pos = table.header.index(col.name)
        filled = sum(r[pos] != "" for r in table.records) / table.rows
        if filled >= share and (best is None or filled > share):
            best, share = col.name, filled
    return best


def _need(picked: tuple[Feed, Path, _Table] | None, kind: str, day: dt.date) -> tuple[Feed, Path, _Table]:
    if picked is None:
        raise RuntimeError(f"{kind}: no free channel feed of {day} fits (too small a bank?)")
    return picked


def _dataset_day(spec: str | None, days: list[dt.date]) -> dt.date:
    chosen = days[-1]
    for part in (spec or "").split(","):
        name, _, value = part.strip().partition("=")
        if name == "dataset_day":
            chosen = dt.date.fromisoformat(value)
    if chosen not in days or chosen == days[0]:
        raise ValueError(
            f"dataset_day {chosen} must be a generated day after the first ({days[0]}..{days[-1]}): "
            "dataset faults are judged against the days before"
        )
    return chosen
