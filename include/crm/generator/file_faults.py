"""File-level defects: which files get one (planned up front) and what each does to a whole
file in transport (:class:`FileFaults`, mixed into :class:`crm.generator.faults.FaultInjector`).
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import shutil
from pathlib import Path

import numpy as np

from crm.feeds import Feed
from crm.generator.fault_kinds import FAULT_KINDS, HELD, PROTECTED_FEEDS, REDELIVERED
from crm.generator.feed_files import _csv_line, control_path

log = logging.getLogger("crm.generator.faults")  # the injector's logger, as before the split


class FileFaults:
    """File defects of :class:`crm.generator.faults.FaultInjector` (``self.file_faults``)."""

    def _plan_file_faults(self, files: dict[str, int], feeds: list[Feed]) -> None:
        """Which file gets which file defect (``self.file_faults``), drawn from the seed."""
        days = self.days
        rng = np.random.default_rng([self.seed, 777])
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
