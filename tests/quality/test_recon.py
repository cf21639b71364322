"""The balance roll-forward on a small generated bank: compensating breaks are still found.

The reconciliation first checks the whole day from two sums per feed and day (the movement's
sum, and its sum weighted by a hash of the account: the raw gate's, or summed from raw); two
breaks that cancel in the plain sum must not hide, and sums of another load are not used.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from crm.quality.gate import run_gate

from .test_gates import START, bank


def _shift(db, day: dt.date, shifts: list[Decimal]) -> list[str]:
    """Move the balances of the day's first accounts by ``shifts``; their ids."""
    accounts = [
        r[0]
        for r in db.execute(
            "select account_id from raw.core_balances where _business_date = %s order by account_id limit %s",
            (day, len(shifts)),
        )
    ]
    for account, shift in zip(accounts, shifts, strict=True):
        db.execute(
            "update raw.core_balances set ledger_balance = ledger_balance + %s"
            " where _business_date = %s and account_id = %s",
            (shift, day, account),
        )
    db.commit()
    return accounts


def _listed(db, day: dt.date) -> list[tuple[str, Decimal]]:
    """The day's roll-forward breaks as listed: (account, actual - expected), by account."""
    return db.execute(
        "select item, actual - expected from dq.reconciliation_breaks"
        " where business_date = %s and check_name = 'recon.balance_roll_forward' order by item",
        (day,),
    ).fetchall()


@pytest.mark.parametrize("profiled", [False, True], ids=["sums from raw", "sums from the raw gate"])
def test_two_breaks_that_cancel_out_are_both_listed(tmp_path, warehouse, db, monkeypatch, profiled):
    bank(tmp_path, monkeypatch, 2, seed=5)
    day = START + dt.timedelta(days=1)
    assert run_gate("recon", day, docs=False).success, "the clean day rolls forward"
    accounts = _shift(db, day, [Decimal(100), Decimal(-100)])
    if profiled:  # the raw gate sums both days in its profile pass (dq.day_totals)
        for d in (START, day):
            run_gate("raw", d, docs=False)
        assert db.execute("select count(*) from dq.day_totals").fetchone()[0] == 4
    assert not run_gate("recon", day, docs=False).success
    assert _listed(db, day) == [(accounts[0], Decimal(100)), (accounts[1], Decimal(-100))]


def test_the_raw_gates_sums_of_an_earlier_load_are_not_trusted(tmp_path, warehouse, db, monkeypatch):
    bank(tmp_path, monkeypatch, 2, seed=5)
    day = START + dt.timedelta(days=1)
    for d in (START, day):
        run_gate("raw", d, docs=False)
    (account,) = _shift(db, day, [Decimal("0.01")])
    # the day's stored sums belong to another load (as after a reload): they still say the
    # day rolls forward, and must not be believed
    db.execute("update dq.day_totals set load_id = load_id + 1000 where business_date = %s", (day,))
    db.commit()
    assert not run_gate("recon", day, docs=False).success
    assert _listed(db, day) == [(account, Decimal("0.01"))]
