"""The fault ledger: one entry per injected defect (``<truth>/faults.jsonl``), with what
ingestion or a gate must report (:class:`FaultLedger`, mixed into
:class:`crm.generator.faults.FaultInjector`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from crm.feeds import Feed
from crm.generator.fault_kinds import FAULT_KINDS


class FaultLedger:
    """``self.ledger`` of :class:`crm.generator.faults.FaultInjector`, and how entries are written."""

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

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.out))
