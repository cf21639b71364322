"""Control records, balances that roll forward, and dataset-level faults (valid rows, wrong data)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from crm.feeds import Feed, load_registry
from crm.generator import generate
from crm.generator.faults import CONTROL_SUFFIX, DATASET_KINDS, FAULT_KINDS, FaultInjector, parse_spec
from tests.generator.validate import Known, check_file, remember

REG = load_registry()
PLAIN = r"-?[0-9]+(\.[0-9]+)?"
# Across a month end, so interest, fees and loan repayments are posted too.
ROLL_START = dt.date(2026, 1, 29)
DS_START = dt.date(2026, 1, 1)
DS_DAYS = 8
DS_DAY = DS_START + dt.timedelta(days=DS_DAYS - 1)
EXPECTED = {
    "volume_drop": ("raw", "raw.volume", "critical"),
    "unit_shift": ("raw", "raw.scale:{column}", "critical"),
    "stale_repeat": ("raw", "raw.stale_repeat", "critical"),
    "null_spike": ("raw", "raw.null_rate:{column}", "warning"),
    "control_mismatch": ("recon", "recon.amounts", "critical"),
    "balance_break": ("recon", "recon.balance_roll_forward", "critical"),
    "segment_collapse": ("mart", "mart.segment_share_shift", "warning"),
}


@pytest.fixture(scope="module")
def small_bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 customers x 5 days, clean."""
    out = tmp_path_factory.mktemp("small")
    generate(customers=200, start=ROLL_START, days=5, seed=31, out=out / "landing", truth=out / "truth")
    return out


@pytest.fixture(scope="module")
def dataset_bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every dataset fault kind on the last of 8 days. 5,000 customers: a unit shift or a null
    spike goes only to a feed with enough rows for the gate to judge (quality.history.MIN_SAMPLE)."""
    out = tmp_path_factory.mktemp("dataset")
    generate(
        customers=5000,
        start=DS_START,
        days=DS_DAYS,
        seed=13,
        out=out / "landing",
        truth=out / "truth",
        faults=",".join(f"{k}=1" for k in DATASET_KINDS),
    )
    return out


def read_file(feed: Feed, path: Path) -> pd.DataFrame:
    if feed.format == "csv":
        return pd.read_csv(path, sep=feed.delimiter, dtype=str, keep_default_na=False)
    if path.stat().st_size == 0:
        return pd.DataFrame(columns=feed.column_names)
    frame = pd.read_json(path, lines=True, dtype=False)
    return frame.astype(object).where(frame.notna(), "").astype(str)


def recomputed_control(feed: Feed, path: Path) -> dict:
    """The control record recomputed with pandas from the delivered file."""
    frame = read_file(feed, path)
    sums: dict[str, dict[str, str]] = {}
    if feed.control is not None:
        for col in feed.control.amounts:
            plain = frame[frame[col].str.fullmatch(PLAIN)]
            by = plain.groupby(feed.control.currency)[col].agg(lambda s: sum(map(Decimal, s), Decimal(0)))
            sums[col] = {cur: str(v.quantize(Decimal("0.01"))) for cur, v in sorted(by.items())}
    return {"file": path.name, "rows": len(frame), "sums": sums}


def feed_files(landing: Path, days: int, start: dt.date):
    for d in range(days):
        day = start + dt.timedelta(days=d)
        for feed in REG.load_order():
            yield feed, day, landing / feed.name / day.isoformat() / feed.file


def net_postings(landing: Path) -> tuple[pd.DataFrame, pd.Series]:
    """Balances (account, day) and net postings per (account, value_date), as Decimals."""
    bal = pd.concat(
        read_file(REG.feed("core_balances"), p) for p in sorted(landing.glob("core_balances/*/*.csv"))
    )
    txn = pd.concat(
        read_file(REG.feed("core_transactions"), p) for p in sorted(landing.glob("core_transactions/*/*.csv"))
    )
    bal["balance"] = bal["ledger_balance"].map(Decimal)
    txn["signed"] = [
        Decimal(a) if d == "C" else -Decimal(a) for a, d in zip(txn["amount"], txn["direction"], strict=False)
    ]
    net = txn.groupby(["account_id", "value_date"])["signed"].agg(lambda s: sum(s, Decimal(0)))
    return bal, net


def roll_forward_breaks(landing: Path) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """{(account, day): (expected, actual)} where balance(d-1) + net postings(d) != balance(d).

    An account without a balance row on d (closed that day) must have come to zero."""
    bal, net = net_postings(landing)
    days = sorted(bal["balance_date"].unique())
    breaks = {}
    for prev, cur in itertools.pairwise(days):
        before = bal[bal["balance_date"] == prev].set_index("account_id")["balance"]
        after = bal[bal["balance_date"] == cur].set_index("account_id")["balance"]
        for account in before.index.union(after.index):
            expected = before.get(account, Decimal(0)) + net.get((account, cur), Decimal(0))
            actual = after.get(account, Decimal(0))
            if expected != actual:
                breaks[(account, cur)] = (expected, actual)
    return breaks


def test_every_file_has_a_control_record_that_matches_it(small_bank):
    landing = small_bank / "landing"
    files = list(feed_files(landing, 5, ROLL_START))
    assert len(files) == 5 * len(REG.feeds)
    money = 0
    for feed, _day, path in files:
        control = json.loads(path.with_name(path.name + CONTROL_SUFFIX).read_text())
        assert control == recomputed_control(feed, path), path
        assert set(control["sums"]) == set(feed.control.amounts if feed.control else ())
        money += sum(len(v) for v in control["sums"].values())
    assert money > 0
    # The money columns come from the registry, and the core feeds declare them.
    assert REG.feed("core_transactions").control.amounts == ("amount",)
    assert REG.feed("core_balances").control.amounts == ("ledger_balance",)
    assert REG.feed("atm_events").control.currency == "currency"


def test_control_records_count_faulted_rows_as_delivered(faulted_bank):
    """Row defects are in the file the source sends, so its control record counts them."""
    landing = faulted_bank / "landing"
    ledger = [json.loads(x) for x in (faulted_bank / "truth" / "faults.jsonl").read_text().splitlines()]
    file_faulted = {e["file"] for e in ledger if e["level"] == "file"}
    checked = 0
    for feed, _day, path in feed_files(landing, 6, DS_START):
        rel = str(path.relative_to(landing))
        if rel in file_faulted or feed.format != "csv" or not path.exists():
            continue
        control = json.loads(path.with_name(path.name + CONTROL_SUFFIX).read_text())
        assert control["rows"] == len(path.read_text(encoding="utf-8").splitlines()) - 1, rel
        checked += 1
    assert checked > 30
    # A missing file has no control record; a held partition keeps its own.
    for e in ledger:
        control = landing / (e["file"] + CONTROL_SUFFIX)
        if e["kind"] == "missing_file":
            assert not control.exists()
        if e["kind"] == "late_partition":
            held = landing / "_held" / e["feed"] / e["day"] / (Path(e["file"]).name + CONTROL_SUFFIX)
            assert held.exists()


def test_balances_roll_forward_on_a_clean_bank(small_bank):
    landing = small_bank / "landing"
    assert roll_forward_breaks(landing) == {}
    bal, net = net_postings(landing)
    assert len(bal["balance_date"].unique()) == 5 and len(net) > 200
    txn = pd.concat(
        read_file(REG.feed("core_transactions"), p) for p in landing.glob("core_transactions/*/*.csv")
    )
    month_end = txn[txn["value_date"] == "2026-01-31"]
    assert {"interest", "fee", "loan_repayment"} <= set(month_end["txn_type"])


def test_dataset_faults_are_in_the_ledger_with_gate_check_and_severity(dataset_bank):
    ledger = [json.loads(x) for x in (dataset_bank / "truth" / "faults.jsonl").read_text().splitlines()]
    assert sorted(e["kind"] for e in ledger) == sorted(DATASET_KINDS)
    channel_feeds = set()
    for e in ledger:
        gate, check, severity = EXPECTED[e["kind"]]
        check = check.format(column=e.get("column"))
        assert (e["gate"], e["check"], e["severity"], e["expected"]) == (gate, check, severity, check), e
        assert e["level"] == "dataset" and e["outcome"] == "flagged" and e["line"] is None
        assert e["day"] == DS_DAY.isoformat()
        assert (dataset_bank / "landing" / e["file"]).exists()
        assert FAULT_KINDS[e["kind"]].gate == gate
        if gate == "raw":
            channel_feeds.add(e["feed"])
    assert len(channel_feeds) == 4, "each channel-feed kind takes its own feed"


def test_dataset_faults_break_no_row_rule(dataset_bank):
    landing = dataset_bank / "landing"
    known = Known()
    for feed, day, path in feed_files(landing, DS_DAYS, DS_START):
        problems = check_file(feed, path, day, known)
        assert not problems, f"{path}: {sorted(problems.items())[:5]}"
        remember(feed, path, REG, known)


def test_dataset_faults_do_what_the_ledger_says(dataset_bank):
    landing = dataset_bank / "landing"
    ledger = {
        e["kind"]: e
        for e in map(json.loads, (dataset_bank / "truth" / "faults.jsonl").read_text().splitlines())
    }
    yesterday = (DS_DAY - dt.timedelta(days=1)).isoformat()

    def frames(e: dict) -> tuple[Feed, pd.DataFrame, pd.DataFrame]:
        feed = REG.feed(e["feed"])
        path = landing / e["file"]
        return feed, read_file(feed, path), read_file(feed, landing / feed.name / yesterday / feed.file)

    e = ledger["volume_drop"]
    _, today, before = frames(e)
    assert len(today) == e["rows_after"] <= 0.45 * e["rows_before"]
    assert len(before) > 0.6 * e["rows_before"]

    # Every value is 100 times one the feed delivers on other days.
    e = ledger["unit_shift"]
    feed = REG.feed(e["feed"])
    col = e["column"]
    today = read_file(feed, landing / e["file"])[col]
    history = pd.concat(read_file(feed, p)[col] for p in (landing / feed.name).glob(f"*/{feed.file}"))
    usual = {Decimal(v) for v in history if v} - {Decimal(v) for v in today}
    assert len(today) and all(Decimal(v) / 100 in usual for v in today if v)

    e = ledger["stale_repeat"]
    feed = REG.feed(e["feed"])
    assert e["repeated_from"] == yesterday
    assert (landing / e["file"]).read_bytes() == (landing / feed.name / yesterday / feed.file).read_bytes()

    e = ledger["null_spike"]
    feed, today, before = frames(e)
    col = e["column"]
    assert not feed.column(col).required
    assert (today[col] == "").mean() >= 0.8 > (before[col] == "").mean() + 0.5

    # Control records match their files, but for the one the ledger names, off by 100.00.
    e = ledger["control_mismatch"]
    for feed, _day, path in feed_files(landing, DS_DAYS, DS_START):
        control = json.loads(path.with_name(path.name + CONTROL_SUFFIX).read_text())
        honest = recomputed_control(feed, path)
        if str(path.relative_to(landing)) == e["file"]:
            assert honest["sums"][e["column"]][e["currency"]] == e["file_sum"]
            assert Decimal(control["sums"][e["column"]][e["currency"]]) - Decimal(e["file_sum"]) == 100
            control["sums"][e["column"]][e["currency"]] = e["file_sum"]
        assert control == honest, path

    # Exactly one balance fails to roll forward: the ledger's; the collapse is posted.
    e = ledger["balance_break"]
    breaks = roll_forward_breaks(landing)
    assert breaks == {
        (e["account_id"], e["day"]): (Decimal(e["expected_balance"]), Decimal(e["actual_balance"]))
    }

    e = ledger["segment_collapse"]
    assert e["segment"] in ("Premier", "Advance", "Personal") and e["customers"] >= 3 and e["accounts"] >= 3
    assert e["share_after"][e["segment"]] < 0.7 * e["share_before"][e["segment"]]
    txn = read_file(
        REG.feed("core_transactions"), landing / "core_transactions" / e["day"] / "transactions.csv"
    )
    assert (txn["txn_id"].str[6:] > "900000000").sum() == e["accounts"]


def test_dataset_fault_spec_is_validated():
    _rows, files = parse_spec("rate=0.01")
    assert not set(files) & set(DATASET_KINDS), "rate= names row and file kinds only"
    assert parse_spec("volume_drop=1,dataset_day=2026-01-05")[1] == {"volume_drop": 1}
    with pytest.raises(ValueError, match="0 or 1"):
        parse_spec("volume_drop=2")
    days = [DS_START + dt.timedelta(days=d) for d in range(3)]
    feeds = REG.load_order()
    with pytest.raises(ValueError, match="after the first"):
        FaultInjector(f"volume_drop=1,dataset_day={DS_START}", 1, Path("."), days, feeds)
    assert FaultInjector("volume_drop=1", 1, Path("."), days, feeds).dataset_day == days[-1]
