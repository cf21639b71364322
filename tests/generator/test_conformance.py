"""Every generated file follows the registry; a faulted bank breaks exactly its ledger."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from crm.feeds import load_registry
from crm.generator.faults import FAULT_KINDS
from tests.generator.conftest import BANK_DAYS, START
from tests.generator.validate import Known, check_file, remember

REG = load_registry()
# Row checks are pure Python: check the first and last weeks in full, the rest only for
# references (core feeds are read every day so the known keys are complete).
CHECKED_DAYS = {START + dt.timedelta(days=d) for d in (*range(7), *range(BANK_DAYS - 7, BANK_DAYS))}


def _days(landing: Path) -> list[dt.date]:
    return sorted(dt.date.fromisoformat(p.stem) for p in (landing / "_manifests").glob("*.json"))


def test_clean_bank_breaks_no_rule_and_every_reference_resolves(bank):
    landing = bank / "landing"
    known = Known()
    checked = 0
    for day in _days(landing):
        for feed in REG.load_order():
            path = landing / feed.name / day.isoformat() / feed.file
            assert path.exists(), f"{path} missing from a clean bank"
            if feed.format == "csv":
                header = path.read_text(encoding="utf-8").split("\n", 1)[0]
                assert header == feed.delimiter.join(feed.column_names), f"{path}: header"
            if day in CHECKED_DAYS or feed.name in ("core_customers", "core_accounts"):
                problems = check_file(feed, path, day, known)
                assert not problems, f"{path}: {sorted(problems.items())[:5]}"
                checked += 1
            remember(feed, path, REG, known)
    assert checked > 14 * len(REG.feeds)


def test_references_resolve_on_the_day_they_are_used(bank):
    """Balances and transactions of a day only name accounts delivered by that day."""
    landing = bank / "landing"
    known = Known()
    for day in _days(landing):
        for name in ("core_customers", "core_accounts", "core_balances", "core_transactions"):
            feed = REG.feed(name)
            path = landing / name / day.isoformat() / feed.file
            problems = check_file(feed, path, day, known)
            assert not problems, f"{path}: {sorted(problems.items())[:5]}"
            remember(feed, path, REG, known)


def _tolerated_text(path: Path, kinds: set[str]) -> None:
    """Undo tolerated file drift in place, as ingestion would, so rows can be checked."""
    data = path.read_bytes()
    if "wrong_encoding" in kinds:
        data = data.decode("gbk").encode("utf-8")
    data = data.removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\n")
    path.write_bytes(data)


def test_faulted_bank_breaks_exactly_the_rules_in_its_ledger(faulted_bank, tmp_path):
    import shutil

    from crm.generator import deliver_late

    landing = tmp_path / "landing"
    shutil.copytree(faulted_bank / "landing", landing)
    ledger = [json.loads(x) for x in (faulted_bank / "truth" / "faults.jsonl").read_text().splitlines()]
    deliver_late(landing)
    file_kinds: dict[str, set[str]] = {}
    for e in ledger:
        if e["level"] == "file":
            file_kinds.setdefault(e["file"], set()).add(e["kind"])
    refused = {k for k, v in FAULT_KINDS.items() if v.outcome == "refused"}
    expected: dict[tuple[str, int], str] = {
        (e["file"], e["line"]): e["expected"] for e in ledger if e["level"] == "row"
    }
    assert len(expected) == sum(1 for e in ledger if e["level"] == "row"), "two faults on one line"
    got: dict[tuple[str, int], str] = {}
    known = Known()
    for day in _days(landing):
        for feed in REG.load_order():
            rel = f"{feed.name}/{day.isoformat()}/{feed.file}"
            kinds = file_kinds.get(rel, set())
            if kinds & refused:
                assert not any(k[0] == rel for k in expected), f"row faults in refused file {rel}"
                continue
            path = landing / rel
            _tolerated_text(path, kinds)
            for line, reason in check_file(feed, path, day, known).items():
                got[(rel, line)] = reason
            remember(feed, path, REG, known)
    missed = {k: v for k, v in expected.items() if got.get(k) != v}
    extra = {k: v for k, v in got.items() if k not in expected}
    assert not missed, f"ledger rows not visible as their reason: {sorted(missed.items())[:5]}"
    assert not extra, f"rows breaking rules outside the ledger: {sorted(extra.items())[:5]}"
    assert {e["kind"] for e in ledger if e["level"] == "row"} == {
        k for k, v in FAULT_KINDS.items() if v.level == "row"
    }
