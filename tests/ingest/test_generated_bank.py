"""Ingestion of the generated sample bank: re-loads are exact, and the quarantine
catches exactly the fault ledger's defects (precision and recall 100%)."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from crm.feeds import load_registry
from crm.ingest import FileRefused, load_file
from crm.warehouse import role_url

pytest.importorskip("crm.generator.cli", reason="the sample-bank generator is not built yet")
from crm import generator

START = dt.date(2026, 1, 1)
REG = load_registry()


def load_all(
    landing: Path, days: int, *, force: bool = False, max_bad_share: float | None = None
) -> list[FileRefused]:
    """Load every feed of ``days`` days; ``max_bad_share`` overrides the feeds' tolerance."""
    refused: list[FileRefused] = []
    with psycopg.connect(role_url("crm_loader")) as conn:
        for d in range(days):
            day = START + dt.timedelta(days=d)
            for feed in REG.load_order():
                if max_bad_share is not None:
                    feed = feed.model_copy(update={"max_bad_share": max_bad_share})
                try:
                    load_file(conn, feed, day, landing / feed.name / day.isoformat() / feed.file, force=force)
                except FileRefused as err:
                    refused.append(err)
    return refused


def checksums(db) -> dict[str, tuple[int, str]]:
    out = {}
    for feed in REG.load_order():
        cols = ", ".join(f'"{c}"' for c in feed.column_names)
        row = db.execute(
            f"select count(*), md5(coalesce(string_agg(md5(row({cols}, _business_date, _line_number)::text), ''"
            f" order by _business_date, _line_number), '')) from raw.{feed.name}"
        ).fetchone()
        out[feed.name] = (row[0], row[1])
    return out


@pytest.fixture(scope="module")
def clean_bank(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bank")
    generator.generate(customers=300, start=START, days=30, seed=11, out=out / "landing", truth=out / "truth")
    return out / "landing"


def test_loading_30_days_twice_gives_identical_tables(clean_bank, db):
    assert load_all(clean_bank, 30) == []
    first = checksums(db)
    assert first["core_transactions"][0] > 0 and first["core_balances"][0] > 0
    quarantined = db.execute("select coalesce(sum(rows_quarantined), 0) from audit.load_log").fetchone()[0]
    assert quarantined == 0, "a clean bank must load without quarantine"
    assert load_all(clean_bank, 30, force=True) == []
    assert checksums(db) == first
    unbalanced = db.execute(
        "select count(*) from audit.load_log where status = 'loaded'"
        " and rows_in_file <> rows_loaded + rows_quarantined"
    ).fetchone()[0]
    assert unbalanced == 0


def test_quarantine_matches_the_fault_ledger_exactly(tmp_path, db):
    days = 6
    generator.generate(
        customers=300,
        start=START,
        days=days,
        seed=5,
        out=tmp_path / "landing",
        truth=tmp_path / "truth",
        faults="rate=0.01",
    )
    ledger = [
        json.loads(line) for line in (tmp_path / "truth" / "faults.jsonl").read_text().splitlines() if line
    ]
    assert ledger, "the fault spec must inject defects"
    # rate=0.01 is per fault kind: about one line in ten is bad, above the feeds' 5 % limit
    # (TOO_MANY_BAD_ROWS has its own tests). Here every bad line must reach quarantine.
    refused = load_all(tmp_path / "landing", days, max_bad_share=0.5)
    expected_rows = {(e["feed"], e["day"], e["line"]): e["expected"] for e in ledger if e["level"] == "row"}
    got_rows = {}
    for feed in REG.load_order():
        for day, line, reason in db.execute(
            f"select _business_date, _line_number, reason from quarantine.{feed.name}"
        ):
            got_rows[(feed.name, day.isoformat(), line)] = reason
    # Row faults inside files that were refused whole cannot be in quarantine.
    refused_files = {(Path(e.path).parent.parent.name, Path(e.path).parent.name) for e in refused}
    expected_rows = {k: v for k, v in expected_rows.items() if (k[0], k[1]) not in refused_files}
    missed = {k: v for k, v in expected_rows.items() if got_rows.get(k) != v}
    extra = {k: v for k, v in got_rows.items() if k not in expected_rows}
    assert not missed, f"recall < 100%: {sorted(missed.items())[:10]}"
    assert not extra, f"precision < 100%: {sorted(extra.items())[:10]}"
    refusing = {"FILE_EMPTY", "FILE_TRUNCATED", "SCHEMA_MISSING_COLUMN", "FILE_MISSING", "ENCODING"}
    expected_refusals = Counter(e["expected"] for e in ledger if e["expected"] in refusing)
    # A late partition is missing when its day runs ...
    late = [e for e in ledger if e["kind"] == "late_partition"]
    expected_refusals["FILE_MISSING"] += len(late)
    # A file of a small feed whose every line is a row fault (one line of three, all bad) is
    # refused whole, whatever the share allowed: no line was good. Its faults are in the ledger.
    all_bad = [err for err in refused if err.rule == "TOO_MANY_BAD_ROWS"]
    faulted_files = {(e["feed"], e["day"]) for e in ledger if e["level"] == "row"}
    for err in all_bad:
        assert "no line was good" in str(err), str(err)
        assert (Path(err.path).parent.parent.name, Path(err.path).parent.name) in faulted_files
    assert Counter(err.rule for err in refused if err not in all_bad) == expected_refusals
    for err in refused:
        assert str(err.path) in str(err) and err.rule in str(err)

    # ... and loads when it arrives, asking for the affected day to be reprocessed.
    delivered = generator.deliver_late(tmp_path / "landing")
    assert len(delivered) == len(late) == 1
    feed = REG.feed(late[0]["feed"])
    day = dt.date.fromisoformat(late[0]["day"])
    with psycopg.connect(role_url("crm_loader")) as conn:
        result = load_file(conn, feed, day, delivered[0] / feed.file)
    assert result.late and result.status == "loaded"
    assert db.execute("select feed, business_date from audit.reprocess_requests").fetchall() == [
        (feed.name, day)
    ]

    tolerated = {e["expected"] for e in ledger if e["outcome"] == "tolerated"} - {
        "LATE_PARTITION",
        "DUPLICATE_DELIVERY",
    }
    warnings = {w.split(":")[0] for (ws,) in db.execute("select warnings from audit.load_log") for w in ws}
    assert tolerated <= warnings, f"tolerated drift not recorded: {tolerated - warnings}"
