"""The fault kinds (:data:`FAULT_KINDS`: level, what ingestion or a gate must report) and
the ``--faults`` spec that names them (:func:`parse_spec`); see :mod:`crm.generator.faults`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


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
    "unit_shift": FaultKind("dataset", "raw.scale:<column>", "flagged", gate="raw", severity="critical"),
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
