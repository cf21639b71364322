"""The sample bank: deterministic, conforming to the registry, realistic, honestly faulted."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from crm.feeds import load_registry
from crm.generator import deliver_late, generate
from crm.generator.faults import FAULT_KINDS, parse_spec
from crm.generator.people import check_digit_ok

START = dt.date(2026, 1, 1)
REG = load_registry()


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> Path:
    """2,000 customers over 120 days: enough for churn precursors and distributions."""
    out = tmp_path_factory.mktemp("bank")
    generate(customers=2000, start=START, days=120, seed=21, out=out / "landing", truth=out / "truth")
    return out


def read_feed(landing: Path, feed_name: str) -> pd.DataFrame:
    feed = REG.feed(feed_name)
    frames = []
    for path in sorted((landing / feed_name).glob(f"*/{feed.file}")):
        if feed.format == "csv":
            frames.append(pd.read_csv(path, sep=feed.delimiter, dtype=str, keep_default_na=False))
        elif path.stat().st_size:
            frames.append(pd.read_json(path, lines=True, dtype=False))
    return pd.concat(frames, ignore_index=True)


def manifest_hashes(landing: Path) -> dict[str, str]:
    out = {}
    for path in sorted((landing / "_manifests").glob("*.json")):
        for entry in json.loads(path.read_text())["files"]:
            out[entry["file"]] = entry["sha256"]
    return out


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate(
        customers=300,
        start=START,
        days=3,
        seed=7,
        out=tmp_path / "a",
        truth=tmp_path / "ta",
        faults="rate=0.01",
    )
    generate(
        customers=300,
        start=START,
        days=3,
        seed=7,
        out=tmp_path / "b",
        truth=tmp_path / "tb",
        faults="rate=0.01",
    )
    generate(customers=300, start=START, days=3, seed=8, out=tmp_path / "c", truth=tmp_path / "tc")
    assert a.faults > 0
    assert manifest_hashes(tmp_path / "a") == manifest_hashes(tmp_path / "b")
    assert (tmp_path / "ta" / "faults.jsonl").read_bytes() == (tmp_path / "tb" / "faults.jsonl").read_bytes()
    hashes_c = manifest_hashes(tmp_path / "c")
    assert any(hashes_c.get(k) != v for k, v in manifest_hashes(tmp_path / "a").items())


def _check_value(col, value: str, day: dt.date) -> str | None:
    if value == "":
        return "MISSING_REQUIRED" if col.required else None
    if col.type in ("int", "bigint") and not re.fullmatch(r"-?\d+", value):
        return "BAD_TYPE"
    if col.type in ("int", "bigint", "numeric"):
        number = float(value)
        if (col.min is not None and number < col.min) or (col.max is not None and number > col.max):
            return "OUT_OF_RANGE"
    if col.type == "date" and dt.date.fromisoformat(value) > day and col.not_future:
        return "FUTURE_DATE"
    if col.type == "timestamp" and col.not_future and dt.datetime.fromisoformat(value).date() > day:
        return "FUTURE_DATE"
    if col.pattern and not re.search(col.pattern, value):
        return "BAD_PATTERN"
    if col.accepted and value not in col.accepted:
        return "NOT_ACCEPTED"
    return None


def test_every_clean_file_conforms_to_the_registry(bank):
    landing = bank / "landing"
    checked = 0
    for feed in REG.load_order():
        for day_dir in sorted((landing / feed.name).iterdir())[:10]:
            day = dt.date.fromisoformat(day_dir.name)
            path = day_dir / feed.file
            if feed.format == "csv":
                with open(path, newline="", encoding="utf-8") as fh:
                    rows = list(csv.reader(fh, delimiter=feed.delimiter))
                assert rows[0] == feed.column_names, f"{path}: header"
                records = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
            else:
                records = [
                    {
                        k: "" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
                        for k, v in json.loads(line).items()
                    }
                    for line in path.read_text(encoding="utf-8").splitlines()
                ]
            keys = [tuple(r[k] for k in feed.key) for r in records]
            assert len(keys) == len(set(keys)), f"{path}: duplicate keys"
            for n, record in enumerate(records, start=2):
                for col in feed.columns:
                    problem = _check_value(col, record.get(col.name, ""), day)
                    assert problem is None, (
                        f"{path} record {n}: {col.name}={record.get(col.name)!r} {problem}"
                    )
                checked += 1
    assert checked > 10_000


def test_national_ids_carry_valid_check_digits_and_birth_dates(bank):
    customers = read_feed(bank / "landing", "core_customers").drop_duplicates("customer_id")
    assert all(check_digit_ok(n) for n in customers["national_id"])
    assert (customers["national_id"].str[6:14] == customers["birth_date"].str.replace("-", "")).all()
    male = customers["gender"] == "M"
    assert (customers["national_id"].str[16].astype(int) % 2 == male.astype(int)).all()


def test_channel_mix_mobile_online_atm_branch(bank):
    landing = bank / "landing"
    counts = {
        feed: len(read_feed(landing, feed))
        for feed in ("mobile_events", "online_sessions", "atm_events", "branch_visits")
    }
    assert (
        counts["mobile_events"]
        > counts["online_sessions"]
        > counts["atm_events"]
        > counts["branch_visits"]
        > 0
    )


def test_satisfaction_near_the_hsbc_benchmark(bank):
    surveys = read_feed(bank / "landing", "surveys")
    overall = surveys["overall_satisfaction"].astype(int)
    assert len(overall) > 200
    assert 3.8 <= overall.mean() <= 4.2
    branch_means = (
        surveys[surveys["branch_id"] != ""]
        .groupby("branch_id")["overall_satisfaction"]
        .apply(lambda s: s.astype(int).mean())
    )
    assert branch_means.max() - branch_means.min() > 0.3, "branches differ"


def test_value_is_concentrated_and_customers_hold_two_to_three_products(bank):
    landing = bank / "landing"
    balances = read_feed(landing, "core_balances")
    first_day = balances[balances["balance_date"] == START.isoformat()]
    accounts = read_feed(landing, "core_accounts").drop_duplicates("account_id", keep="last")
    merged = first_day.merge(accounts[["account_id", "customer_id", "product_code"]], on="account_id")
    merged["balance"] = merged["ledger_balance"].astype(float)
    trb = merged[merged["balance"] > 0].groupby("customer_id")["balance"].sum().sort_values(ascending=False)
    top20 = trb.iloc[: len(trb) // 5].sum() / trb.sum()
    assert top20 > 0.6, f"top 20 % hold {top20:.0%} of balances"
    products = merged.groupby("customer_id")["product_code"].nunique()
    assert 2.0 <= products.mean() <= 3.5


def test_churn_rate_in_band_and_churners_show_precursors(bank):
    truth = pd.read_csv(bank / "truth" / "customers_truth.csv", dtype=str, keep_default_na=False)
    initial = truth[truth["onboarding_date"] < START.isoformat()]
    churned = initial[initial["churn_type"] != "none"]
    annual = len(churned) / len(initial) * 365 / 120
    assert 0.06 <= annual <= 0.20, f"annualised churn {annual:.1%}"
    assert set(churned["churn_type"]) == {"closure", "silent"}
    # Logins in the 30 days before churn versus 60-90 days before, for churners with a full window.
    mobile = read_feed(bank / "landing", "mobile_events")
    mobile = mobile[mobile["event_type"] == "login"]
    mobile["day"] = pd.to_datetime(mobile["event_ts_ms"], unit="ms").dt.date
    late = churned[churned["churn_date"] >= (START + dt.timedelta(days=95)).isoformat()]
    assert len(late) >= 5
    recent, earlier = 0, 0
    for cid, churn in zip(late["customer_id"], late["churn_date"], strict=True):
        c = dt.date.fromisoformat(churn)
        days = mobile.loc[mobile["customer_id"] == cid, "day"]
        recent += ((days >= c - dt.timedelta(days=30)) & (days < c)).sum()
        earlier += ((days >= c - dt.timedelta(days=90)) & (days < c - dt.timedelta(days=60))).sum()
    assert recent < 0.6 * earlier, f"logins before churn: {recent} (last 30 d) vs {earlier} (60-90 d before)"
    complaints = read_feed(bank / "landing", "complaints")
    churner_rate = complaints["customer_id"].isin(churned["customer_id"]).mean()
    assert churner_rate > len(churned) / len(truth) * 2, "churners complain more than their share"


def test_ledger_entries_are_visible_in_the_files(tmp_path):
    result = generate(
        customers=400,
        start=START,
        days=5,
        seed=9,
        out=tmp_path / "l",
        truth=tmp_path / "t",
        faults="rate=0.02",
    )
    ledger = [json.loads(x) for x in (tmp_path / "t" / "faults.jsonl").read_text().splitlines()]
    assert len(ledger) == result.faults > 0
    assert {e["kind"] for e in ledger if e["level"] == "file"} == {
        k for k, v in FAULT_KINDS.items() if v.level == "file"
    }
    for entry in ledger:
        path = tmp_path / "l" / entry["file"]
        kind = entry["kind"]
        if kind == "missing_file":
            assert not path.exists()
        elif kind == "late_partition":
            assert not path.exists() and (tmp_path / "l" / "_held" / entry["feed"] / entry["day"]).exists()
        elif kind == "empty_file":
            assert path.stat().st_size == 0
        elif kind == "truncated_last_line":
            assert not path.read_bytes().endswith(b"\n")
        elif kind == "bom":
            assert path.read_bytes().startswith(b"\xef\xbb\xbf")
        elif kind == "crlf":
            assert b"\r\n" in path.read_bytes()
        elif kind == "wrong_encoding":
            with pytest.raises(UnicodeDecodeError):
                path.read_bytes().decode("utf-8")
        elif kind == "duplicate_delivery":
            assert (
                tmp_path / "l" / "_redelivered" / entry["feed"] / entry["day"] / path.name
            ).read_bytes() == path.read_bytes()
        elif entry["level"] == "row":
            lines = path.read_text(encoding="utf-8").splitlines()
            line = lines[entry["line"] - 1]
            if kind == "duplicate_key":
                assert line == lines[entry["line"] - 2]
            elif kind == "missing_key":
                feed = REG.feed(entry["feed"])
                if feed.format == "csv":
                    fields = next(csv.reader([line], delimiter=feed.delimiter))
                    key = fields[feed.column_names.index(feed.key[0])]
                else:
                    key = json.loads(line)[feed.key[0]]
                assert key in ("", None)
            elif kind == "bad_json":
                with pytest.raises(ValueError):
                    json.loads(line)
            elif kind in ("unknown_customer", "unknown_account"):
                assert "C999999999" in line or "A99999999999" in line
            elif kind == "bad_enum":
                assert "ZZZ" in line
            elif kind == "bad_date":
                assert "2026-02-30" in line
    assert len(deliver_late(tmp_path / "l")) == 1


def test_fault_spec_is_validated():
    rows, files = parse_spec("missing_key=0.01,wrong_encoding=2")
    assert rows == {"missing_key": 0.01} and files == {"wrong_encoding": 2}
    with pytest.raises(ValueError, match="unknown fault kind"):
        parse_spec("gremlins=1")


def test_cli_generates_and_reports(tmp_path):
    from crm.cli import app

    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--customers",
            "100",
            "--days",
            "2",
            "--out",
            str(tmp_path / "o"),
            "--truth",
            str(tmp_path / "t"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "core_transactions" in result.output
    assert (tmp_path / "o" / "_manifests" / "2026-01-02.json").exists()
    assert np.isfinite(len(list((tmp_path / "o").rglob("*.csv"))))
