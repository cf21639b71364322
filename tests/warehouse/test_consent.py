"""Marketing consent (PIPL) from the core extract to the offer lists, on a real warehouse.

A small generated bank is loaded through the real loader and built day by day with the real
dbt project; after each day's build the day's cross-sell list and the RM worklist's offers
are compared with the generator's ground truth of consent (``consent_changes.csv``): an
opt-out holds from its business day, so the list of that day and of every later day must
leave the customer out, while consenting customers keep getting offers.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from crm.feeds import load_registry
from crm.generator import consent as consent_module
from crm.generator import generate
from crm.ingest import load_file
from crm.settings import get_settings
from crm.warehouse import role_url
from tests.ingest.test_loader import CUSTOMERS, DAY, customer_row, write_csv

START = dt.date(2026, 1, 1)
REG = load_registry()
# The built bank: enough customers and days that some opt out while lists are built.
LIST_CUSTOMERS, LIST_DAYS, LIST_SEED = 1200, 12, 4
FIRST_BUILT = 6  # day offsets FIRST_BUILT .. LIST_DAYS - 1 are built one after the other
# The rate bank (generated only): enough customer-days for the daily rates.
RATE_CUSTOMERS, RATE_DAYS, RATE_SEED = 3000, 60, 8


def _admin(pg_server) -> str:
    from crm.warehouse import with_database

    return with_database(pg_server.url(), "postgres")


def consent_by_day(truth: Path, days: list[dt.date]) -> dict[dt.date, set[str]]:
    """Customers whose consent is Y on each day, from the ground truth's changes."""
    changes = pd.read_csv(truth / "consent_changes.csv", dtype=str)
    result, state = {}, {}
    by_date = {d: g for d, g in changes.groupby("change_date")}
    for day in sorted(days):
        for past in sorted(k for k in list(by_date) if k <= day.isoformat()):
            state.update(zip(by_date[past]["customer_id"], by_date[past]["marketing_consent"], strict=True))
            del by_date[past]
        result[day] = {c for c, v in state.items() if v == "Y"}
    return result


@pytest.fixture(scope="module")
def built_lists(pg_server, tmp_path_factory) -> Iterator[dict]:
    """The list bank loaded and built for each day from FIRST_BUILT on; per built day the
    customers in the cross-sell list and those the RM worklist suggests an offer to."""
    from crm.transform import build
    from crm.warehouse import bootstrap, with_database

    work = tmp_path_factory.mktemp("consent")
    generate(
        customers=LIST_CUSTOMERS,
        start=START,
        days=LIST_DAYS,
        seed=LIST_SEED,
        out=work / "landing",
        truth=work / "truth",
    )
    name = f"consent_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin(pg_server), autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = with_database(pg_server.url(), name)
    bootstrap(url, get_settings())
    lists: dict[dt.date, dict[str, set[str]]] = {}
    try:
        with psycopg.connect(role_url("crm_loader", base_url=url)) as loader:
            for d in range(LIST_DAYS):
                day = START + dt.timedelta(days=d)
                for feed in REG.load_order():
                    load_file(loader, feed, day, work / "landing" / feed.name / day.isoformat() / feed.file)
                if d < FIRST_BUILT:
                    continue
                build(day, full_refresh=d == FIRST_BUILT, base_url=url)
                with psycopg.connect(url) as conn:
                    cross_sell = conn.execute(
                        "select distinct customer_id from marts.cross_sell_opportunities where snapshot_date = %s",
                        (day,),
                    ).fetchall()
                    offered = conn.execute(
                        "select customer_id from marts.rm_worklist"
                        " where snapshot_date = %s and suggested_action like 'offer %%'",
                        (day,),
                    ).fetchall()
                    staged = conn.execute(
                        "select customer_id from staging.stg_core__customers where marketing_consent = 'Y'"
                    ).fetchall()
                lists[day] = {
                    "cross_sell": {r[0] for r in cross_sell},
                    "offered": {r[0] for r in offered},
                    "staged_consent": {r[0] for r in staged},
                }
        yield {"lists": lists, "truth": work / "truth"}
    finally:
        with psycopg.connect(_admin(pg_server), autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def test_opted_out_customers_get_no_offer_from_their_opt_out_day(built_lists):
    """PIPL: an opt-out on day d takes effect on d: no cross-sell list or RM offer for any
    built day >= d names the customer, while consenting customers still get offers."""
    lists, truth = built_lists["lists"], built_lists["truth"]
    days = sorted(lists)
    consent = consent_by_day(truth, days)
    changes = pd.read_csv(truth / "consent_changes.csv", dtype=str)
    opt_outs = changes[changes["reason"] == "opt_out"]
    assert len(opt_outs) >= 3, "the bank must have opt-outs before and while lists are built"
    for row in opt_outs.itertuples():
        since = dt.date.fromisoformat(row.change_date)
        for day in (d for d in days if d >= since and row.customer_id not in consent[d]):
            assert row.customer_id not in lists[day]["cross_sell"], f"opt-out of {since} in the list of {day}"
            assert row.customer_id not in lists[day]["offered"], f"opt-out of {since} offered on {day}"
    # One opt-out while lists were built had offers before it: the filter changed their list.
    switched = [
        r
        for r in opt_outs.itertuples()
        if any(
            d < dt.date.fromisoformat(r.change_date) and r.customer_id in lists[d]["cross_sell"] for d in days
        )
    ]
    assert switched, "no opt-out during the built days had been offered before: widen the bank"
    for day in days:
        # Staging holds exactly the ground truth's consent of the day built.
        assert lists[day]["staged_consent"] == consent[day], day
        assert lists[day]["cross_sell"] <= consent[day], f"{day}: offers to customers without consent"
        assert lists[day]["offered"] <= consent[day], f"{day}: RM offers to customers without consent"
        # Consenting customers are offered (~45 % of them have a product most peers hold and they
        # lack): the list is not simply emptied.
        assert len(lists[day]["cross_sell"]) > 0.3 * len(consent[day]), day
        assert lists[day]["offered"], f"{day}: the RM worklist offers nothing at all"


def test_consent_rates_match_the_configured_ones(tmp_path):
    """The generated consent is realistic: ~70 % at onboarding, few daily opt-outs and fewer
    opt-ins, measured from the delivered CDC files (each change a row of that day) and equal
    to the ground truth's log."""
    landing, truth = tmp_path / "landing", tmp_path / "truth"
    generate(customers=RATE_CUSTOMERS, start=START, days=RATE_DAYS, seed=RATE_SEED, out=landing, truth=truth)
    state: dict[str, tuple[str, str]] = {}  # customer -> (consent, status) after the last day read
    onboarded = consented = 0
    exposure = {"Y": 0, "N": 0}  # customer-days that could opt out (Y) or in (N)
    moves = {"Y": 0, "N": 0}
    seen_changes = []
    for d in range(RATE_DAYS):
        day = (START + dt.timedelta(days=d)).isoformat()
        rows = pd.read_csv(
            landing / "core_customers" / day / "customers.csv", dtype=str, keep_default_na=False
        )
        assert set(rows["marketing_consent"]) <= {"Y", "N"}
        new = rows[rows["change_type"] == "I"]
        onboarded += len(new)
        consented += int((new["marketing_consent"] == "Y").sum())
        if d:
            for value in ("Y", "N"):
                exposure[value] += sum(1 for c, s in state.values() if c == value and s != "closed")
        for cid, value, status in zip(
            rows["customer_id"], rows["marketing_consent"], rows["status"], strict=True
        ):
            before = state.get(cid)
            if before is not None and before[0] != value:
                moves[before[0]] += 1
                seen_changes.append((cid, day, value))
            state[cid] = (value, status)
    onboarding_rate = consented / onboarded
    sd = (
        consent_module.CONSENT_AT_ONBOARDING * (1 - consent_module.CONSENT_AT_ONBOARDING) / onboarded
    ) ** 0.5
    assert abs(onboarding_rate - consent_module.CONSENT_AT_ONBOARDING) < 4 * sd, onboarding_rate
    for value, configured in (
        ("Y", consent_module.CONSENT_OPT_OUT_DAILY),
        ("N", consent_module.CONSENT_OPT_IN_DAILY),
    ):
        expected = exposure[value] * configured
        assert moves[value] > 0, f"no {'opt-outs' if value == 'Y' else 'opt-ins'} in {RATE_DAYS} days"
        assert abs(moves[value] - expected) < 4 * expected**0.5 + 1, (value, moves[value], expected)
    assert consent_module.CONSENT_OPT_IN_DAILY < consent_module.CONSENT_OPT_OUT_DAILY
    changes = pd.read_csv(truth / "consent_changes.csv", dtype=str)
    logged = changes[changes["reason"] != "onboarding"]
    assert sorted(seen_changes) == sorted(
        zip(logged["customer_id"], logged["change_date"], logged["marketing_consent"], strict=True)
    ), "every change in the truth arrives as a CDC row of that customer on that day, and no other"
    assert len(changes[changes["reason"] == "onboarding"]) == onboarded


@pytest.fixture
def loader_conn(warehouse):
    """A connection as the loader role, on a fresh warehouse."""
    with psycopg.connect(role_url("crm_loader")) as conn:
        yield conn


def test_loader_quarantines_a_bad_consent_value_naming_the_column(tmp_path, loader_conn, db):
    """A consent value the registry does not accept (or none) is quarantined, not loaded as
    a silent 'no': the reason names the column and the rule, never the value itself."""
    rows = [
        customer_row(1),
        customer_row(2, marketing_consent="N"),
        customer_row(3, marketing_consent="OPTIN-XQZ"),  # line 4
        customer_row(4, marketing_consent=""),  # line 5
    ]
    path = write_csv(tmp_path / "customers.csv", CUSTOMERS.column_names, rows)
    result = load_file(loader_conn, CUSTOMERS, DAY, path)
    assert (result.rows_loaded, result.rows_quarantined) == (2, 2)
    got = db.execute(
        "select _line_number, reason, column_name, detail from quarantine.core_customers order by 1"
    ).fetchall()
    assert [(line, reason, column) for line, reason, column, _ in got] == [
        (4, "NOT_ACCEPTED", "marketing_consent"),
        (5, "MISSING_REQUIRED", "marketing_consent"),
    ]
    assert all("marketing_consent" in detail and "OPTIN-XQZ" not in detail for *_, detail in got)
    loaded = dict(db.execute("select customer_id, marketing_consent from raw.core_customers").fetchall())
    assert loaded == {"C000000001": "Y", "C000000002": "N"}
