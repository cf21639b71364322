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
  ``unit_shift``            raw     raw.scale:<column>                critical  column, factor (100)
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

Where each part lives: the kinds and the spec in :mod:`~crm.generator.fault_kinds`; row,
file and dataset defects in :mod:`~crm.generator.row_faults`, :mod:`~crm.generator.file_faults`
and :mod:`~crm.generator.dataset_faults`; the ledger in :mod:`~crm.generator.fault_ledger`;
files as records and their control records in :mod:`~crm.generator.feed_files`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from crm.feeds import Feed
from crm.generator.dataset_faults import DatasetFaults
from crm.generator.fault_kinds import (
    DATASET_KINDS,
    FAULT_KINDS,
    FILE_KINDS,
    HELD,
    PROTECTED_FEEDS,
    REDELIVERED,
    ROW_KINDS,
    FaultKind,
    _dataset_day,
    parse_spec,
)
from crm.generator.fault_ledger import FaultLedger
from crm.generator.feed_files import (
    CONTROL_SUFFIX,
    PLAIN_DECIMAL,
    control_path,
    control_record,
    write_control,
)
from crm.generator.file_faults import FileFaults
from crm.generator.row_faults import RowFaults

__all__ = [
    "CONTROL_SUFFIX",
    "DATASET_KINDS",
    "FAULT_KINDS",
    "FILE_KINDS",
    "HELD",
    "PLAIN_DECIMAL",
    "PROTECTED_FEEDS",
    "REDELIVERED",
    "ROW_KINDS",
    "FaultInjector",
    "FaultKind",
    "control_path",
    "control_record",
    "parse_spec",
    "write_control",
]


class FaultInjector(RowFaults, FileFaults, DatasetFaults, FaultLedger):
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
        self._plan_file_faults(files, feeds)

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
