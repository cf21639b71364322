"""The customer book: onboarding (demographics, latent traits, fate, referrer), LV segments
and relationship managers, the day's changes to customers, and the core customer extract.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from crm.generator import fate, people
from crm.generator.accounts import FX_BASE
from crm.generator.records import _cid, _ts, _zfill

OCCUPATIONS = np.array(
    [
        "engineer",
        "teacher",
        "doctor",
        "civil_servant",
        "sales",
        "manager",
        "business_owner",
        "worker",
        "retired",
        "student",
        "finance",
        "it_professional",
    ]
)
OCC_INCOME = np.array([1.3, 0.9, 1.6, 1.0, 0.9, 1.8, 2.5, 0.6, 0.5, 0.2, 1.9, 1.6])
FAMILY_ROLES = np.array(["head", "spouse", "child", "single", "parent"])


def _keyed_choice(seed: int, idx: np.ndarray, fn) -> np.ndarray:
    """Identity values that are a pure function of (seed, customer number), chunk-independent."""
    out = np.empty(len(idx), dtype=object)
    # Group by a block of 4096 customer numbers so the work stays vectorised.
    blocks = idx // 4096
    for b in np.unique(blocks):
        sel = np.flatnonzero(blocks == b)
        rng = np.random.default_rng([seed, 99, int(b)])
        values = fn(rng, 4096)
        out[sel] = values[idx[sel] % 4096]
    return out


class CustomerBook:
    """Customers in :class:`crm.generator.bank.Bank`'s arrays (``self.arrays``, one slot each)."""

    def _add_customers(
        self, rng: np.random.Generator, k: int, day: dt.date, initial: bool = False
    ) -> np.ndarray:
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        idx = np.arange(self.n, self.n + k)
        self.n += k
        a = self.arrays
        age = np.clip(rng.normal(42, 13, k), 18, 85)
        a["male"][idx] = rng.random(k) < 0.5
        birth = np.datetime64(day.isoformat()) - (age * 365.25).astype("timedelta64[D]")
        a["birth"][idx] = birth
        occ = rng.integers(0, len(OCCUPATIONS), k)
        occ = np.where(age > 62, 8, np.where(age < 23, 9, occ))
        a["occ"][idx] = occ
        a["years_emp"][idx] = np.clip((age - 22) * rng.uniform(0.2, 0.9, k), 0, 45).astype(np.int16)
        # Income: log-normal, driven by occupation and age; heavy right tail.
        income = np.exp(rng.normal(11.4, 0.75, k)) * OCC_INCOME[occ] * (1 + np.clip(age - 25, 0, 25) / 40)
        a["income"][idx] = np.round(np.minimum(income, 60_000_000), -2)
        a["role"][idx] = rng.choice(5, k, p=[0.38, 0.27, 0.08, 0.2, 0.07])
        a["fam"][idx] = np.clip(rng.poisson(2.2, k) + 1, 1, 8)
        a["branch"][idx] = rng.choice(len(self._branch_p), k, p=self._branch_p)
        a["area"][idx] = self._branch_area[a["branch"][idx]].astype(np.int32)
        if initial:
            tenure = rng.integers(30, 365 * 12, k)
            a["onboard"][idx] = np.datetime64(day.isoformat()) - tenure.astype("timedelta64[D]")
        else:
            a["onboard"][idx] = np.datetime64(day.isoformat())
        # Latent traits.
        wealth = rng.lognormal(0, 1.1, k)
        a["value"][idx] = a["income"][idx] * wealth
        loyalty = np.clip(rng.beta(2.2, 2.2, k) + 0.05 * np.log1p(wealth), 0, 1)
        a["loyalty"][idx] = loyalty
        young = np.clip((60 - age) / 40, 0, 1)
        pref = rng.dirichlet([2.5, 1.6, 1.0, 0.6], k)
        pref[:, 0] *= 0.5 + young
        pref[:, 3] *= 1.5 - young
        pref /= pref.sum(axis=1, keepdims=True)
        a["p_mobile"][idx], a["p_online"][idx], a["p_atm"][idx], a["p_branch"][idx] = pref.T
        a["sensitivity"][idx] = rng.beta(2, 3, k)
        a["sat"][idx] = rng.normal(0.0, 0.45, k)
        a["status"][idx] = 0  # 0 active, 1 dormant, 2 closed
        self._onboarding_consent(idx, day)
        # Fate: churn day and type, then how (and whether) it shows beforehand.
        d = (day - self.start).days
        first = 0 if initial else d + fate.FIRST_CHURN_AFTER
        a["churn_day"][idx], a["churn_type"][idx] = fate.draw_churn(
            rng, loyalty, a["sensitivity"][idx], first
        )
        for name, values in fate.draw_behaviour(self.seed, d, a["churn_day"][idx], first).items():
            a[name][idx] = values
        # Word of mouth: referrers are current customers, the loyal ones more often.
        referred = rng.random(k) < (0.03 + 0.05 * loyalty if initial else 0.08 + 0.1 * loyalty)
        pool = np.flatnonzero(a["status"][: self.n - k] < 2)
        a["referred_by"][idx] = -1
        if len(pool) and referred.any():
            weight = a["loyalty"][pool] + 0.05
            a["referred_by"][idx[referred]] = rng.choice(pool, int(referred.sum()), p=weight / weight.sum())
        a["rm"][idx] = -1
        self._open_accounts(rng, idx, day, initial)
        self.rm_changed = np.union1d(self.rm_changed, self._assign_segments_and_rms())
        return idx

    def _assign_segments_and_rms(self) -> np.ndarray:
        """LV quadrants from the latent traits; an RM for every key customer without one.

        Returns the customers who were given an RM (a change the core reports)."""
        a = self.arrays
        n = self.n
        high_value = a["value"][:n] >= np.quantile(a["value"][:n], 0.8)
        high_loyal = a["loyalty"][:n] >= np.quantile(a["loyalty"][:n], 0.5)
        a["quadrant"][:n] = np.where(
            high_value & high_loyal, 0, np.where(high_value, 1, np.where(high_loyal, 2, 3))
        )
        # Key customers (top 20 % by value) have a relationship manager (~150 each).
        top = np.flatnonzero(high_value)
        need = top[a["rm"][top] < 0]
        self._n_rms = max(1, len(top) // 150 + 1)
        a["rm"][need] = 1 + (need % self._n_rms)
        return need

    def _customer_changes(self, rng, d, day, churn_today, new_ids) -> np.ndarray:
        a = self.arrays
        n = self.n
        closure, dormant = fate.exits(a, n, d, churn_today)
        # A few ordinary changes: income revised, moved to another city, new RM.
        alive = a["status"][:n] < 2
        revised = (rng.random(n) < 0.0004) & alive
        a["income"][:n][revised] = np.round(
            a["income"][:n][revised] * rng.uniform(0.9, 1.3, revised.sum()), -2
        )
        moved = np.flatnonzero((rng.random(n) < 0.0001) & alive)
        a["branch"][moved] = rng.choice(len(self._branch_p), len(moved), p=self._branch_p)
        new_rm = np.flatnonzero((rng.random(n) < 0.0003) & alive & (a["rm"][:n] > 0))
        a["rm"][new_rm] = 1 + (a["rm"][new_rm] + rng.integers(0, self._n_rms, len(new_rm))) % self._n_rms
        changed = np.flatnonzero(closure | dormant | revised)
        if d > 0:
            changed = np.union1d(changed, self._consent_changes(day, alive, new_ids))
        changed = np.union1d(np.union1d(changed, moved), np.union1d(new_rm, self.rm_changed))
        self.rm_changed = np.zeros(0, dtype=np.int64)
        return np.union1d(changed, new_ids)

    def _customers_frame(self, idx, day, d, new_ids) -> pd.DataFrame:
        a = self.arrays
        idx = np.asarray(idx, dtype=np.int64)
        k = len(idx)
        branch = a["branch"][idx]
        cities = self._branch_city[branch]
        # Identity fields are pure functions of (seed, customer number), so every CDC row
        # of a customer repeats them exactly.
        full_name = _keyed_choice(self.seed, idx, people.names)
        mobile = _keyed_choice(self.seed + 1, idx, people.mobiles)
        seq = (idx * 7919 + self.seed) % 500
        nid = people.national_ids(a["area"][idx], a["birth"][idx], a["male"][idx], seq)
        email = people.emails(idx, self.seed)
        addr = people.addresses(cities, idx)
        is_new = np.isin(idx, new_ids) | (d == 0)
        rm = a["rm"][idx]
        ref = a["referred_by"][idx]
        return pd.DataFrame(
            {
                "customer_id": _cid(idx),
                "change_type": np.where(is_new, "I", "U"),
                "national_id": nid,
                "full_name": full_name,
                "mobile": mobile,
                "email": email,
                "address": addr,
                "gender": np.where(a["male"][idx], "M", "F"),
                "birth_date": np.datetime_as_string(a["birth"][idx]),
                "occupation": OCCUPATIONS[a["occ"][idx]],
                "years_employed": a["years_emp"][idx],
                "annual_income_cny": np.char.mod("%.2f", np.round(a["income"][idx] / FX_BASE["CNY"], 2)),
                "family_role": FAMILY_ROLES[a["role"][idx]],
                "family_size": a["fam"][idx],
                "city": cities,
                "home_branch_id": self._branch_ids[branch],
                "onboarding_date": np.datetime_as_string(a["onboard"][idx]),
                "status": np.array(["active", "dormant", "closed"])[a["status"][idx]],
                "rm_id": np.where(rm > 0, np.char.add("RM", _zfill(rm.astype("U4"), 4)), ""),
                "referred_by": np.where(ref >= 0, _cid(np.maximum(ref, 0)), ""),
                "marketing_consent": np.where(a["consent"][idx], "Y", "N"),
                "updated_at": _ts(day, np.full(k, 6 * 3600) + (idx % 3600)),
            }
        )
