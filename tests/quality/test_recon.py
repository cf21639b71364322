"""The balance roll-forward on a small generated bank: compensating breaks are still found.

The reconciliation first checks the whole day in one pass (the residuals' sum, and their sum
weighted by a hash of the account); two breaks that cancel in the plain sum must not hide.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from crm.quality.gate import run_gate

from .test_gates import START, bank


def test_two_breaks_that_cancel_out_are_both_listed(tmp_path, warehouse, db, monkeypatch):
    bank(tmp_path, monkeypatch, 2, seed=5)
    day = START + dt.timedelta(days=1)
    assert run_gate("recon", day, docs=False).success, "the clean day rolls forward"
    accounts = [
        r[0]
        for r in db.execute(
            "select account_id from raw.core_balances where _business_date = %s order by account_id limit 2",
            (day,),
        )
    ]
    for account, shift in zip(accounts, (Decimal(100), Decimal(-100)), strict=True):
        db.execute(
            "update raw.core_balances set ledger_balance = ledger_balance + %s"
            " where _business_date = %s and account_id = %s",
            (shift, day, account),
        )
    db.commit()
    out = run_gate("recon", day, docs=False)
    assert not out.success
    breaks = db.execute(
        "select item, actual - expected from dq.reconciliation_breaks"
        " where business_date = %s and check_name = 'recon.balance_roll_forward' order by item",
        (day,),
    ).fetchall()
    assert breaks == [(accounts[0], Decimal(100)), (accounts[1], Decimal(-100))]
