"""Accounts and their balances: opening (products, currency, opening balance), closing, the
core account and end-of-day balance extracts, and the day's FX rates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pandas as pd

from crm.generator.records import _ts, _zfill

CURRENCIES = np.array(["CNY", "HKD", "USD"])
FX_BASE = {"CNY": 1.085, "HKD": 1.0, "USD": 7.80}  # HKD per unit, start of the simulation


def _currency_mix(allowed: list[str]) -> np.ndarray:
    weights = np.array([{"CNY": 0.8, "HKD": 0.15, "USD": 0.05}[c] for c in allowed])
    return weights / weights.sum()


class AccountBook:
    """Accounts in :class:`crm.generator.bank.Bank`'s arrays (``self.acc``, one slot each)."""

    def _open_accounts(self, rng: np.random.Generator, idx: np.ndarray, day: dt.date, initial: bool) -> None:
        a = self.arrays
        k = len(idx)
        # Product needs: more products for richer, more loyal customers (2-3 on average).
        affinity = (np.log(a["value"][idx]) - 11.5) / 2 + a["loyalty"][idx]
        owners, products = [], []
        for p, need in enumerate(self._needs):
            prob = np.clip(need * (0.55 + 0.45 * affinity), 0.02, 0.98) if p else np.ones(k)
            take = rng.random(k) < prob
            owners.append(idx[take])
            products.append(np.full(take.sum(), p))
        self._create_accounts(rng, np.concatenate(owners), np.concatenate(products), day, initial)

    def _create_accounts(
        self, rng: np.random.Generator, owner: np.ndarray, product: np.ndarray, day: dt.date, initial: bool
    ) -> None:
        a = self.arrays
        if self.na + len(owner) > self.acap:  # more accounts than planned: grow the arrays
            self.acap = max(self.acap * 3 // 2, self.na + len(owner))
            for name, arr in self.acc.items():
                grown = np.zeros(self.acap, dtype=arr.dtype)
                grown[: len(arr)] = arr
                self.acc[name] = grown
        m = len(owner)
        j = np.arange(self.na, self.na + m)
        self.na += m
        c = self.acc
        c["owner"][j] = owner
        c["product"][j] = product
        cur = np.zeros(m, dtype=np.int8)
        for p, allowed in enumerate(self._currencies):
            sel = product == p
            choice = rng.choice(len(allowed), sel.sum(), p=_currency_mix(allowed))
            cur[sel] = np.array([CURRENCIES.tolist().index(x) for x in allowed])[choice]
        c["currency"][j] = cur
        onboard = a["onboard"][owner]
        if initial:
            span = (np.datetime64(day.isoformat()) - onboard).astype(int)
            c["open"][j] = onboard + (rng.random(m) * np.minimum(span, 400)).astype("timedelta64[D]")
        else:
            c["open"][j] = np.datetime64(day.isoformat())
        c["status"][j] = 0
        value = a["value"][owner]
        family = self._product_family[product]
        bal = np.where(
            family == "deposit",
            value * rng.uniform(0.05, 0.35, m),
            np.where(
                family == "time_deposit",
                value * rng.uniform(0.2, 0.8, m),
                np.where(
                    family == "investment",
                    value * rng.uniform(0.2, 1.2, m),
                    np.where(
                        family == "fx_account",
                        value * rng.uniform(0.05, 0.3, m),
                        np.where(
                            family == "insurance",
                            value * rng.uniform(0.05, 0.2, m),
                            np.where(
                                family == "credit_card",
                                -a["income"][owner] * rng.uniform(0, 0.05, m),
                                np.where(
                                    family == "personal_loan",
                                    -a["income"][owner] * rng.uniform(0.2, 0.8, m),
                                    -a["income"][owner] * rng.uniform(2, 6, m),
                                ),
                            ),
                        ),
                    ),
                ),
            ),
        )
        rate = np.array([self.fx[x] for x in CURRENCIES])[cur]
        c["balance"][j] = np.round(bal / rate, 2)  # values are in HKD terms, stored in account currency
        c["limit"][j] = np.where(family == "credit_card", np.round(a["income"][owner] * 0.3, -3), 0)

    def _account_changes(self, day, churn_today) -> np.ndarray:
        c = self.acc
        na = self.na
        owner = c["owner"][:na]
        closing = churn_today[owner] & (self.arrays["churn_type"][owner] == 1) & (c["status"][:na] == 0)
        c["status"][:na][closing] = 1
        c["close"][:na][closing] = np.datetime64(day.isoformat())
        # Balances move only by postings (see _transactions): a closed account's remainder
        # is paid out (or its debt settled) by a closing posting on the day it closes.
        return np.flatnonzero(closing)

    def _accounts_frame(self, j, day, d, new_set) -> pd.DataFrame:
        c = self.acc
        j = np.asarray(j, dtype=np.int64)
        codes = np.array(self.ref.product_codes)
        close = c["close"][j]
        closed = c["status"][j] == 1
        limit = c["limit"][j]
        return pd.DataFrame(
            {
                "account_id": np.char.add("A", _zfill((j + 1).astype("U11"), 11)),
                "change_type": np.where((d == 0) | np.isin(j, new_set), "I", "U"),
                "customer_id": np.char.add("C", _zfill((c["owner"][j] + 1).astype("U9"), 9)),
                "product_code": codes[c["product"][j]],
                "currency": CURRENCIES[c["currency"][j]],
                "open_date": np.datetime_as_string(c["open"][j]),
                "close_date": np.where(closed, np.datetime_as_string(close), ""),
                "status": np.where(closed, "closed", "open"),
                "credit_limit": np.where(limit > 0, np.char.mod("%.2f", limit), ""),
                "updated_at": _ts(day, np.full(len(j), 5 * 3600) + (j % 3600)),
            }
        )

    def _balances_frames(self, day, chunk: int = 400_000) -> Iterator[pd.DataFrame]:
        """End-of-day balances of every open account, in chunks (the largest feed)."""
        c = self.acc
        open_ = np.flatnonzero(c["status"][: self.na] == 0)
        for lo in range(0, max(len(open_), 1), chunk):
            yield self._balances_frame(day, open_[lo : lo + chunk])

    def _balances_frame(self, day, j: np.ndarray) -> pd.DataFrame:
        c = self.acc
        bal = c["balance"][j]
        avail = np.where(bal > 0, bal, bal + c["limit"][j])
        return pd.DataFrame(
            {
                "balance_date": day.isoformat(),
                "account_id": np.char.add("A", _zfill((j + 1).astype("U11"), 11)),
                "currency": CURRENCIES[c["currency"][j]],
                "ledger_balance": np.char.mod("%.2f", bal),
                "available_balance": np.char.mod("%.2f", avail),
            }
        )

    def _fx_frame(self, rng, day) -> pd.DataFrame:
        for cur in ("CNY", "USD"):
            self.fx[cur] = round(self.fx[cur] * float(np.exp(rng.normal(0, 0.002))), 6)
        return pd.DataFrame(
            {
                "rate_date": day.isoformat(),
                "currency": ["CNY", "HKD", "USD"],
                "reporting_currency": "HKD",
                "rate": [f"{self.fx['CNY']:.6f}", "1.000000", f"{self.fx['USD']:.6f}"],
            }
        )

    def _primary_account(self) -> np.ndarray:
        """Each customer's first open deposit account (-1 if none)."""
        c = self.acc
        na = self.na
        primary = np.full(self.n, -1, dtype=np.int64)
        dep = np.flatnonzero((c["status"][:na] == 0) & (self._product_family[c["product"][:na]] == "deposit"))
        # Reverse so the first account wins on assignment.
        primary[c["owner"][dep][::-1]] = dep[::-1]
        return primary
