"""The day's postings (core_transactions), applied to the balances to the cent: customers'
own transactions, and postings that follow from the accounts (openings, closures,
leavers' outflows, draw-downs, month-end interest, fees and repayments).
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from crm.generator import fate
from crm.generator.accounts import CURRENCIES
from crm.generator.records import _ts, _zfill

OTHER_BANKS = np.array(["ICBC", "CCB", "BOC", "ABC", "CMB", "PINGAN"])
MCCS = np.array(["5411", "5812", "5999", "4111", "5311", "5732", "7011", "5541"])


MAX_POSTING = 49_000_000.0  # below the registry's max amount (50,000,000)


def _split_large(acct: np.ndarray, amount: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Postings above MAX_POSTING as several postings that add up to the cent; returns
    (accounts, amounts, index of each new posting's original)."""
    cents = np.round(amount * 100).astype(np.int64)
    parts = np.maximum(1, -(-cents // int(MAX_POSTING * 100)))
    keep = np.repeat(np.arange(len(cents)), parts)
    if len(keep) == len(cents):
        return acct, amount, keep
    first = np.concatenate([[0], np.cumsum(parts)[:-1]])
    within = np.arange(len(keep)) - np.repeat(first, parts)
    share = cents[keep] // parts[keep] + (within < cents[keep] % parts[keep])
    return acct[keep], share / 100, keep


class Postings:
    """Postings against :class:`crm.generator.bank.Bank`'s accounts."""

    def _transactions(self, rng, d, day, sig: fate.Signals, churn_today, new_accounts, closed) -> dict:
        """The day's postings, applied to the balances: every account's end-of-day balance is
        the previous one plus its credits (C) minus its debits (D), to the cent. ``amount`` is
        what moves the balance (a transfer's ``fee`` is the bank's charge within it)."""
        a = self.arrays
        n = self.n
        primary = self._primary_account()
        pre = sig.signal
        lam = (0.35 + 0.9 * a["loyalty"][:n]) * sig.activity * (primary >= 0)
        count = rng.poisson(lam)
        who = np.repeat(np.arange(n), count)
        # Silent leavers move most of their money to another bank on their churn day.
        silent = np.flatnonzero(churn_today & (a["churn_type"][:n] == 2) & (primary >= 0))
        m = len(who)
        types = np.array(
            [
                "card_purchase",
                "transfer_out",
                "transfer_in",
                "salary",
                "bill_payment",
                "atm_withdrawal",
                "fee",
                "investment_buy",
                "fx_exchange",
            ]
        )
        t = rng.choice(len(types), m, p=[0.38, 0.16, 0.1, 0.05, 0.14, 0.07, 0.03, 0.04, 0.03])
        txn_type = types[t]
        income = a["income"][who]
        amount = np.round(np.clip(rng.lognormal(np.log(income / 400 + 50), 0.9), 1, 2_000_000), 2)
        amount = np.where(txn_type == "salary", np.round(income / 12, 2), amount)
        amount = np.where(txn_type == "fee", np.round(rng.uniform(5, 50, m), 2), amount)
        pref = np.stack([a["p_mobile"][who], a["p_online"][who], a["p_branch"][who] * 0.5], axis=1)
        pref = pref / pref.sum(axis=1, keepdims=True)
        pick = (rng.random(m)[:, None] > np.cumsum(pref, axis=1)).sum(axis=1)
        channel = np.array(["mobile", "online", "branch"])[np.minimum(pick, 2)]
        channel = np.where(np.isin(txn_type, ["salary", "fee", "card_purchase"]), "system", channel)
        channel = np.where(txn_type == "atm_withdrawal", "atm", channel)
        direction = np.where(np.isin(txn_type, ["transfer_in", "salary"]), "C", "D")
        counterparty = np.where(
            (txn_type == "transfer_out") & (rng.random(m) < 0.3 + 0.6 * pre[who]),
            OTHER_BANKS[rng.integers(0, len(OTHER_BANKS), m)],
            "",
        )
        acct = primary[who]
        mcc = np.where(txn_type == "card_purchase", MCCS[rng.integers(0, len(MCCS), m)], "")
        extra = self._account_postings(rng, d, day, sig, churn_today, silent, new_accounts, closed)
        acct = np.concatenate([acct, extra["acct"]]).astype(np.int64)
        txn_type = np.concatenate([txn_type, extra["txn_type"]])
        amount = np.concatenate([amount, extra["amount"]])
        channel = np.concatenate([channel, extra["channel"]])
        direction = np.concatenate([direction, extra["direction"]])
        counterparty = np.concatenate([counterparty, extra["counterparty"]])
        mcc = np.concatenate([mcc, np.full(len(extra["acct"]), "")])
        # Post, then top up asset accounts a day's debits would leave below zero (the
        # customer moves money in from elsewhere), so deposits never go negative.
        c = self.acc
        signed = np.where(direction == "C", amount, -amount)
        net = np.bincount(acct, weights=signed, minlength=self.na)[: self.na]
        after = np.round(c["balance"][: self.na] + net, 2)
        short = np.flatnonzero(
            (after < 0) & self._is_asset[c["product"][: self.na]] & (c["status"][: self.na] == 0)
        )
        if len(short):
            top = np.round(-after[short] + rng.uniform(100, 2000, len(short)), 2)
            acct = np.concatenate([acct, short])
            txn_type = np.concatenate([txn_type, np.full(len(short), "transfer_in")])
            amount = np.concatenate([amount, top])
            channel = np.concatenate([channel, np.full(len(short), "mobile")])
            direction = np.concatenate([direction, np.full(len(short), "C")])
            counterparty = np.concatenate([counterparty, np.full(len(short), "")])
            mcc = np.concatenate([mcc, np.full(len(short), "")])
            after[short] = np.round(after[short] + top, 2)
        acct, amount, keep = _split_large(acct, amount)
        txn_type, channel, direction = txn_type[keep], channel[keep], direction[keep]
        counterparty, mcc = counterparty[keep], mcc[keep]
        c["balance"][: self.na] = after
        m = len(acct)
        secs = np.sort(rng.integers(0, 86400, m)) if m else np.zeros(0, dtype=np.int64)
        fee = np.where(txn_type == "transfer_out", np.round(np.minimum(amount * 0.001, 50), 2), 0)
        return dict(
            {
                "txn_id": np.char.add(f"T{d + 1:05d}", _zfill(np.arange(1, m + 1).astype("U9"), 9)),
                "account_id": np.char.add("A", _zfill((acct + 1).astype("U11"), 11)),
                "posted_at": _ts(day, secs),
                "value_date": day.isoformat(),
                "amount": np.char.mod("%.2f", amount),
                "currency": CURRENCIES[self.acc["currency"][acct]] if m else np.zeros(0, "U3"),
                "direction": direction,
                "txn_type": txn_type,
                "channel": channel,
                "mcc": mcc,
                "counterparty_bank": counterparty,
                "fee": np.char.mod("%.2f", fee),
            }
        )

    def _account_postings(self, rng, d, day, sig, churn_today, silent, new_accounts, closed) -> dict:
        """Postings that follow from the accounts themselves rather than from a customer's
        day: opening amounts of new accounts, pay-outs of closed ones, silent leavers'
        outflows, churners' draw-downs, and month-end interest, fees and loan repayments."""
        c = self.acc
        na = self.na
        bal = c["balance"][:na]
        prod = c["product"][:na]
        family = self._product_family[prod]
        asset = self._is_asset[prod]
        open_ = c["status"][:na] == 0
        owner = c["owner"][:na]
        parts: list[tuple] = []  # (accounts, txn_type, amount, direction, channel, counterparty)

        def add(j, kind, amt, direction, channel, counterparty="") -> None:
            amt = np.round(np.abs(amt), 2)
            ok = amt >= 0.01
            j = j[ok]
            amt = amt[ok]

            def pick(v):
                return v[ok] if isinstance(v, np.ndarray) else np.full(len(j), v)

            parts.append((j, pick(kind), amt, pick(direction), channel, pick(counterparty)))

        # Opening amounts (day 0's accounts were opened before the extract began).
        if d > 0 and len(new_accounts):
            j = new_accounts[bal[new_accounts] != 0]
            b = bal[j]
            kind = np.where(
                b > 0, "transfer_in", np.where(family[j] == "credit_card", "card_purchase", "transfer_out")
            )
            add(j, kind, b, np.where(b > 0, "C", "D"), "branch")
            bal[new_accounts] = 0  # the postings below bring them to their opening balance
        # Closed today: the remainder is paid out, a debt settled.
        if len(closed):
            j = closed[bal[closed] != 0]
            b = bal[j]
            add(j, np.where(b > 0, "transfer_out", "loan_repayment"), b, np.where(b > 0, "D", "C"), "branch")
        # Silent leavers move 90 % of every asset account to another bank on their churn day.
        if len(silent):
            leaving = np.zeros(self.n, dtype=bool)
            leaving[silent] = True
            j = np.flatnonzero(leaving[owner] & asset & open_ & (bal > 0))
            banks = OTHER_BANKS[rng.integers(0, len(OTHER_BANKS), len(j))]
            add(j, "transfer_out", bal[j] * 0.9, "D", "online", banks)
        # Churners in their warning window draw their assets down, often to a competitor.
        drawing, share = fate.drawdowns(rng, sig, owner, asset & open_ & (bal > 0) & ~churn_today[owner])
        banks = np.where(
            rng.random(len(drawing)) < 0.5, OTHER_BANKS[rng.integers(0, len(OTHER_BANKS), len(drawing))], ""
        )
        add(drawing, "transfer_out", bal[drawing] * share, "D", "mobile", banks)
        # Month end: interest on deposits and loans, product fees, loan repayments.
        if (day + dt.timedelta(days=1)).day == 1:
            rate = np.array([self.fx[x] for x in CURRENCIES])[c["currency"][:na]]
            earning = np.flatnonzero(
                open_ & np.isin(family, ["deposit", "time_deposit", "fx_account"]) & (bal > 0)
            )
            yearly = np.where(family[earning] == "time_deposit", 0.015, 0.0035)
            add(earning, "interest", bal[earning] * yearly / 12, "C", "system")
            loans = np.flatnonzero(open_ & np.isin(family, ["personal_loan", "mortgage"]) & (bal < 0))
            yearly = np.where(family[loans] == "mortgage", 0.04, 0.06)
            add(loans, "interest", bal[loans] * yearly / 12, "D", "system")
            months = np.where(family[loans] == "mortgage", 240, 36)
            add(loans, "loan_repayment", bal[loans] * (1 / months + yearly / 12), "C", "system")
            charged = np.flatnonzero(open_ & (self._fee[prod] > 0))
            add(charged, "fee", self._fee[prod][charged] / rate[charged], "D", "system")
        if not parts:
            empty = np.zeros(0, dtype=object)
            return {k: empty for k in ("txn_type", "direction", "channel", "counterparty")} | {
                "acct": np.zeros(0, dtype=np.int64),
                "amount": np.zeros(0),
            }
        return {
            "acct": np.concatenate([x[0] for x in parts]).astype(np.int64),
            "txn_type": np.concatenate([x[1] for x in parts]).astype(object),
            "amount": np.concatenate([x[2] for x in parts]),
            "direction": np.concatenate([x[3] for x in parts]).astype(object),
            "channel": np.concatenate([np.full(len(x[0]), x[4], dtype=object) for x in parts]),
            "counterparty": np.concatenate([x[5] for x in parts]).astype(object),
        }
