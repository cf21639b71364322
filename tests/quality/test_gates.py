"""The quality gates on generated banks, with real GX, real PostgreSQL and real dbt.

Every dataset-level fault of the sample bank (rows that pass every row rule, data that is
wrong) is caught by the gate, check and severity its ledger names, and by nothing else;
clean days pass every gate without a warning.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest

from crm.generator import generate
from crm.generator.faults import DATASET_KINDS
from crm.quality.gate import GateFailed, run_gate
from crm.settings import get_settings
from tests.ingest.test_generated_bank import load_all

START = dt.date(2026, 1, 1)


def bank(
    tmp_path: Path, monkeypatch, days: int, seed: int, faults: str | None = None, customers: int = 300
) -> tuple[Path, list[dict]]:
    landing, truth = tmp_path / "landing", tmp_path / "truth"
    generate(customers=customers, start=START, days=days, seed=seed, out=landing, truth=truth, faults=faults)
    monkeypatch.setenv("CRM_LANDING_DIR", str(landing))
    get_settings.cache_clear()
    assert not load_all(landing, days), "every file of the bank loads"
    ledger = [json.loads(line) for line in (truth / "faults.jsonl").read_text().splitlines() if line]
    return landing, ledger


def gates(day: dt.date, names=("raw", "recon")):
    return {name: run_gate(name, day, docs=False) for name in names}


def failures(runs) -> set[tuple[str, str, str, str]]:
    """(gate, subject, check, severity) of every expectation that failed."""
    return {
        (gate, run.subject, o.check, o.severity)
        for gate, out in runs.items()
        for run in out.runs
        for o in run.outcomes
        if not o.success
    }


def test_thirty_clean_days_pass_every_gate_without_a_warning(tmp_path, warehouse, monkeypatch):
    from crm.transform import build

    days = 30
    bank(tmp_path, monkeypatch, days, seed=21)
    alarms = {}
    for d in range(1, days):
        day = START + dt.timedelta(days=d)
        runs = gates(day)
        if failures(runs):
            alarms[day] = [line for out in runs.values() for line in out.summary().splitlines()[1:-1]]
    assert not alarms, f"false alarms on clean days: {alarms}"
    last = START + dt.timedelta(days=days - 1)
    build(last - dt.timedelta(days=1), full_refresh=True)
    build(last)
    mart = gates(last, ["mart"])
    assert not failures(mart), mart["mart"].summary()


def caught(found, entries) -> set:
    """The failures each ledger entry predicts; asserts each is there with its severity."""
    expected = set()
    for e in entries:
        hits = {f for f in found if f[0] == e["gate"] and f[2] == e["check"]}
        if e["gate"] == "raw":
            hits = {f for f in hits if f[1] == e["feed"]}
        assert hits, (
            f"{e['kind']}: no failed {e['gate']} check {e['check']} ({e.get('feed')}); failed: {found}"
        )
        assert {f[3] for f in hits} == {e["severity"]}, f"{e['kind']}: severity"
        expected |= hits
    return expected


# Twelve days: a small feed (campaign contacts: 3 a day at 300 customers, none some days)
# needs its five days of history before its median is judged.
DAYS = 12
LAST = START + dt.timedelta(days=DAYS - 1)
ROW_LEVEL = [k for k in DATASET_KINDS if k != "segment_collapse"]


def test_each_raw_and_recon_fault_is_caught_by_the_check_and_severity_its_ledger_names(
    tmp_path, warehouse, db, monkeypatch
):
    # 5,000 customers: a feed of 30 rows a day that drops to 12 is within chance; of 100, not;
    # and a unit shift needs a money feed with a median of at least MIN_SAMPLE values to be
    # seen (campaign contacts: ~30 a day at 5,000 customers, ~5 at 1,000).
    faults = ",".join(f"{k}=1" for k in ROW_LEVEL)
    _, ledger = bank(tmp_path, monkeypatch, DAYS, seed=13, faults=faults, customers=5000)
    for d in range(1, DAYS - 1):  # the feeds' history
        gates(START + dt.timedelta(days=d))
    runs = gates(LAST)
    found = failures(runs)
    entries = [e for e in ledger if e.get("level") == "dataset"]
    assert {e["kind"] for e in entries} == set(ROW_LEVEL)
    caught(found, entries)
    # A fault may trip more than its own check on its feed (fewer rows, fewer distinct keys).
    faulted = {(e["gate"], e["feed"] if e["gate"] == "raw" else "breaks") for e in entries}
    assert {f for f in found if f[:2] not in faulted} == set(), "alarms on a feed without a fault"
    with pytest.raises(GateFailed, match=rf"raw gate failed for {LAST}: \w+ raw\.\S+"):
        runs["raw"].raise_if_failed()

    # The reconciliation lists the exact account and amounts.
    broken = next(e for e in entries if e["kind"] == "balance_break")
    row = db.execute(
        "select expected, actual from dq.reconciliation_breaks"
        " where check_name = 'recon.balance_roll_forward' and item = %s",
        (broken["account_id"],),
    ).fetchone()
    assert row == (Decimal(broken["expected_balance"]), Decimal(broken["actual_balance"]))
    mismatch = next(e for e in entries if e["kind"] == "control_mismatch")
    row = db.execute(
        "select expected, actual from dq.reconciliation_breaks where check_name = 'recon.amounts' and item = %s",
        (f"{mismatch['column']} {mismatch['currency']}",),
    ).fetchone()
    assert row == (Decimal(mismatch["control_sum"]), Decimal(mismatch["file_sum"]))
    recorded = db.execute(
        "select count(*) filter (where not success), count(*) from dq.validation_runs where business_date = %s",
        (LAST,),
    ).fetchone()
    assert recorded[0] >= 1 and recorded[1] == sum(len(o.runs) for o in runs.values())


def test_a_segment_collapse_is_a_mart_warning_that_leaves_the_gate_green(tmp_path, warehouse, monkeypatch):
    from crm.transform import build

    _, ledger = bank(tmp_path, monkeypatch, DAYS, seed=13, faults="segment_collapse=1")
    build(LAST - dt.timedelta(days=1), full_refresh=True)
    build(LAST)
    runs = gates(LAST, ["mart"])
    found = failures(runs)
    entries = [e for e in ledger if e.get("level") == "dataset"]
    assert found == caught(found, entries)
    assert runs["mart"].success, "a warning leaves the gate green"


def test_no_secret_in_the_gx_project_or_its_results(warehouse, tmp_path, monkeypatch):
    from crm.warehouse import ROLES

    settings = get_settings()
    run_gate("raw", START, subjects=["fx_rates"])  # writes results and Data Docs under CRM_HOME/gx
    secrets = [settings.role_password(r) for r in ROLES] + [settings.role_password("crm_owner")]
    places = [settings.expectations_dir, settings.home / "gx"]
    files = [p for place in places for p in place.rglob("*") if p.is_file()]
    assert any((settings.home / "gx" / "data_docs").rglob("*.html")), "Data Docs were built"
    leaks = [str(p) for p in files for s in secrets if s and s in p.read_text(errors="ignore")]
    assert not leaks
    config = (settings.expectations_dir / "gx" / "great_expectations.yml").read_text()
    assert "${CRM_GX_WAREHOUSE_URL}" in config and "postgresql://" not in config


def test_the_committed_suites_are_what_the_registry_and_dbt_vars_give():
    """Like feeds.md: edit the registry or a dbt var, run `crm dq suites`, commit the diff."""
    from crm.quality.suites import suites

    root = get_settings().expectations_dir / "gx" / "expectations"
    for name, (_, _, checks) in suites().items():
        gate, subject = name.split(".", 1)
        committed = json.loads((root / gate / f"{subject}.json").read_text())
        got = [(e["type"], e["meta"]["check"], e["severity"]) for e in committed["expectations"]]
        want = [(_snake(c.expectation), c.name, c.severity) for c in checks]
        assert sorted(got) == sorted(want), name
        kwargs = {e["meta"]["check"]: e["kwargs"] for e in committed["expectations"]}
        for c in checks:
            assert {k: v for k, v in c.kwargs.items() if k != "description"} == kwargs[c.name], c.name
    # the raw gate's figures, with their severity, are declared in its suite's meta
    from crm.feeds import load_registry
    from crm.quality.suites import raw_figures

    figures = json.loads((root / "raw" / "profile.json").read_text())["meta"]["figures"]
    assert figures == {f.name: [x.meta() for x in raw_figures(f)] for f in load_registry().load_order()}


def _snake(name: str) -> str:
    import re

    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_a_month_end_volume_is_judged_against_earlier_month_ends(db):
    """The core system books interest, fees and repayments on the last day of a month: that
    day's volume is judged against earlier month ends, other days against other days."""
    from crm.quality.history import past_volumes

    day, rows = dt.date(2025, 1, 1), []
    while day < dt.date(2025, 9, 30):
        month_end = (day + dt.timedelta(days=1)).day == 1
        rows.append(("core_transactions", day, f"/x/{day}.csv", "loaded", 4000 if month_end else 800))
        day += dt.timedelta(days=1)
    with db.cursor() as cur:
        cur.executemany(
            "insert into audit.load_log (feed, business_date, file_path, status, rows_loaded)"
            " values (%s, %s, %s, %s, %s)",
            rows,
        )
    db.commit()
    assert set(past_volumes(db, "core_transactions", dt.date(2025, 9, 30))) == {4000.0}
    assert len(past_volumes(db, "core_transactions", dt.date(2025, 9, 30))) == 8  # Jan..Aug
    assert set(past_volumes(db, "core_transactions", dt.date(2025, 9, 29))) == {800.0}
