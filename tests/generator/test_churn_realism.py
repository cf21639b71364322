"""Churn in the sample bank is as hard to see coming as in a real bank (crm.generator.fate).

A bank of 1,000 customers is simulated for 480 days in memory; the customers' own activity
is counted from the records the bank emits (mobile logins, online sessions, ATM events,
branch tickets, card purchases and bill payments), and compared with the latent fate the
generator drew (strength, window, quiet spells). No number here is hard-coded from a run:
the bounds follow from the model (e.g. a churner with strength s and window W loses about
s * (1 - 15.5 / W) of their activity in the last 30 days).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from crm.generator import fate, generate
from crm.generator.bank import Bank, _cidx
from crm.generator.reference import load_reference

START = dt.date(2026, 1, 1)
DAYS = 480
CUSTOMERS = 1000
SEED = 31
OWN_TXN = ("card_purchase", "bill_payment")  # only ever the customer's own doing


@pytest.fixture(scope="module")
def sim() -> dict:
    return simulate(CUSTOMERS, DAYS, SEED)


def simulate(customers: int, days: int, seed: int) -> dict:
    """Events per (day, customer) and every quiet spell the generator entered."""
    bank = Bank(load_reference(), seed, START, days, customers)
    events = np.zeros((days, bank.cap), dtype=np.int32)
    spells: set[tuple[int, int, int]] = set()
    for d in range(days):
        for feed, frame in bank.simulate_day(d):
            if feed == "mobile_events":
                ids = _cidx(frame.loc[frame["event_type"] == "login", "customer_id"])
            elif feed in ("online_sessions", "atm_events", "branch_visits"):
                ids = _cidx(frame["customer_id"])
            elif feed == "core_transactions":
                own = frame[frame["txn_type"].isin(OWN_TXN)]
                owner = bank.acc["owner"][own["account_id"].str[1:].astype(np.int64).to_numpy() - 1]
                ids = owner
            else:
                continue
            np.add.at(events[d], ids, 1)
        a = bank.arrays
        on = np.flatnonzero((a["quiet_start"][: bank.n] <= d) & (d < a["quiet_end"][: bank.n]))
        spells.update(
            zip(on.tolist(), a["quiet_start"][on].tolist(), a["quiet_end"][on].tolist(), strict=True)
        )
    return {"bank": bank, "events": events, "spells": sorted(spells)}


def _rate(events: np.ndarray, who: int, lo: int, hi: int) -> float:
    return float(events[lo:hi, who].mean())


def _churners_with_baseline(bank: Bank) -> np.ndarray:
    """Churners in the horizon with at least 60 days of normal behaviour before their window."""
    a = bank.arrays
    n = bank.n
    day = a["churn_day"][:n].astype(np.int64)
    onboard = (a["onboard"][:n] - np.datetime64(START.isoformat())).astype(np.int64).clip(min=0)
    return np.flatnonzero((day < DAYS) & (day - a["window"][:n] - onboard >= 60))


def _drops(sim: dict, who: np.ndarray) -> np.ndarray:
    """Per churner: 1 - (activity in the last 30 days) / (activity before the window)."""
    a, events = sim["bank"].arrays, sim["events"]
    onboard = (a["onboard"] - np.datetime64(START.isoformat())).astype(np.int64).clip(min=0)
    out = []
    for i in who:
        day, window = int(a["churn_day"][i]), int(a["window"][i])
        before = _rate(events, i, int(onboard[i]), day - window)
        out.append(1 - _rate(events, i, day - 30, day) / before if before > 0 else np.nan)
    return np.array(out)


def test_churners_drop_by_widely_different_amounts(sim):
    bank = sim["bank"]
    who = _churners_with_baseline(bank)
    drops = _drops(sim, who)
    ok = ~np.isnan(drops)
    who, drops = who[ok], drops[ok]
    assert len(who) >= 60, f"only {len(who)} churners with a baseline"
    p10, p25, p75, p90 = np.percentile(drops, [10, 25, 75, 90])
    # Some churners' activity hardly moves (no warning, or a weak one) ...
    assert p10 < 0.15, f"10th percentile of the drop {p10:.2f}: every churner fades"
    assert (np.abs(drops) < 0.2).mean() > 0.12, "too few churners leave without a visible drop"
    # ... others fade out almost completely: no single, learnable 85 %.
    assert p90 > 0.55, f"90th percentile of the drop {p90:.2f}: nobody fades strongly"
    assert p75 - p25 > 0.3, f"interquartile range {p75 - p25:.2f}: the drop is too uniform"
    # The measured drop follows the drawn strength (data and latent fate agree).
    strength = bank.arrays["strength"][who]
    assert np.corrcoef(strength, drops)[0, 1] > 0.5


def test_no_warning_share_and_their_activity_is_normal(sim):
    bank = sim["bank"]
    a = bank.arrays
    churners = np.flatnonzero(a["churn_day"][: bank.n] < DAYS)
    share = (a["strength"][churners] == 0).mean()
    sd = np.sqrt(fate.NO_WARNING_SHARE * (1 - fate.NO_WARNING_SHARE) / len(churners))
    assert abs(share - fate.NO_WARNING_SHARE) < 4 * sd, f"no-warning share {share:.1%} of {len(churners)}"
    assert 0.1 <= share <= 0.25
    # In the data: no-warning churners keep their activity to the end; strong ones do not.
    who = _churners_with_baseline(bank)
    none = who[a["strength"][who] == 0]
    strong = who[(a["strength"][who] > 0.6) & (a["window"][who] >= 60)]
    assert len(none) >= 10 and len(strong) >= 10
    events = sim["events"]

    def pooled(group: np.ndarray) -> float:
        recent = sum(
            events[int(a["churn_day"][i]) - 30 : int(a["churn_day"][i]), i].sum() / 30 for i in group
        )
        start = (a["onboard"][group] - np.datetime64(START.isoformat())).astype(np.int64).clip(min=0)
        base = sum(
            _rate(events, i, int(s), int(a["churn_day"][i]) - int(a["window"][i]))
            for i, s in zip(group, start, strict=True)
        )
        return recent / base

    assert 0.85 < pooled(none) < 1.15, f"no-warning churners: {pooled(none):.2f} of their usual activity"
    assert pooled(strong) < 0.6, f"strong churners: {pooled(strong):.2f} of their usual activity"


def test_stayers_have_quiet_spells_and_recover(sim):
    bank, events = sim["bank"], sim["events"]
    a = bank.arrays
    stayers = a["churn_day"][: bank.n] >= DAYS
    spells = [(i, s, e) for i, s, e in sim["spells"] if stayers[i]]
    # A few percent of the stayers a year: spells started per customer-year in the horizon.
    onboard = (a["onboard"][: bank.n] - np.datetime64(START.isoformat())).astype(np.int64).clip(min=0)
    years = (DAYS - onboard[stayers]).sum() / 365
    yearly = sum(1 for _, s, _ in spells if s < DAYS) / years
    assert 0.5 * fate.QUIET_ANNUAL < yearly < 1.6 * fate.QUIET_ANNUAL, f"{yearly:.1%} spells a year"
    assert all(fate.QUIET_DAYS[0] <= e - s <= fate.QUIET_DAYS[1] for _, s, e in spells)
    # Spells with 30 days either side inside the horizon: quiet, then back to normal.
    seen = [(i, s, e) for i, s, e in spells if s - 30 >= onboard[i] and e + 30 <= DAYS]
    assert len(seen) >= 15, f"only {len(seen)} complete quiet spells"
    before = np.array([_rate(events, i, s - 30, s) for i, s, _ in seen])
    during = np.array([_rate(events, i, s, e) for i, s, e in seen])
    after = np.array([_rate(events, i, e, e + 30) for i, _, e in seen])
    assert during.sum() < 0.4 * before.sum(), f"activity in spells {during.sum() / before.sum():.0%}"
    assert (during < before).mean() >= 0.9
    assert after.sum() > 0.8 * before.sum(), f"activity after spells {after.sum() / before.sum():.0%}"
    assert (after > during).mean() >= 0.9, "customers come back after a quiet spell"


def test_churn_rate_is_the_configured_one(sim):
    bank = sim["bank"]
    a = bank.arrays
    initial = np.arange(CUSTOMERS)
    churned = (a["churn_day"][initial] < DAYS).sum()
    # The hazard the churn draw uses (crm.generator.fate.draw_churn), per customer.
    hazard = (
        fate.ANNUAL_CHURN
        / 365
        * (1.8 - 1.4 * a["loyalty"][initial])
        * (0.7 + 0.6 * a["sensitivity"][initial])
    )
    p = 1 - (1 - hazard) ** (DAYS - 1)
    assert abs(churned - p.sum()) < 4 * np.sqrt((p * (1 - p)).sum()), (
        f"{churned} churners, expected {p.sum():.0f}"
    )
    annual = 1 - (1 - churned / CUSTOMERS) ** (365 / DAYS)
    assert abs(annual - fate.ANNUAL_CHURN) < 0.035, f"annual churn {annual:.1%}"


def test_same_seed_same_files_and_truth_format(tmp_path):
    runs = {}
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        generate(
            customers=200, start=START, days=30, seed=seed, out=tmp_path / name, truth=tmp_path / f"t{name}"
        )
        runs[name] = {
            f"{label}/{p.relative_to(root)}": p.read_bytes()
            for label, root in (("landing", tmp_path / name), ("truth", tmp_path / f"t{name}"))
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }
    assert runs["a"] == runs["b"]
    assert runs["a"]["truth/customers_truth.csv"] != runs["c"]["truth/customers_truth.csv"]
    header = runs["a"]["truth/customers_truth.csv"].split(b"\n", 1)[0].decode()
    assert header == (
        "customer_id,lv_quadrant,value_potential_hkd,loyalty,channel_preference,"
        "service_sensitivity,churn_date,churn_type,onboarding_date"
    )
