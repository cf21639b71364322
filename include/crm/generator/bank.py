"""The sample bank's latent model and its day-by-day behaviour.

Every customer has hidden traits (value potential from demographics, loyalty,
channel preference, service sensitivity, satisfaction) and a pre-drawn fate (churn
day and type, and how much of it shows beforehand: :mod:`crm.generator.fate`).
Each simulated day turns those traits into the channel systems' records.

State lives in numpy arrays (one slot per customer / account), so a million
customers fit in a few hundred MB and a day costs time linear in the customers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crm.generator import fate, people
from crm.generator.reference import Reference

ANNUAL_GROWTH = 0.14  # new customers a year, as a share of the book
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
CURRENCIES = np.array(["CNY", "HKD", "USD"])
FX_BASE = {"CNY": 1.085, "HKD": 1.0, "USD": 7.80}  # HKD per unit, start of the simulation
OTHER_BANKS = np.array(["ICBC", "CCB", "BOC", "ABC", "CMB", "PINGAN"])
MCCS = np.array(["5411", "5812", "5999", "4111", "5311", "5732", "7011", "5541"])
REMARKS = np.array(["", "", "", "", "客户满意", "办理较快", "等候时间长", "VIP客户", "需回访"])
QUADRANTS = np.array(["A", "B", "C", "D"])
# Marketing consent (PIPL): the share who consent at onboarding, then each day a share of
# the consenting customers opts out and a smaller share of the others opts in; every change
# reaches the core extract as a CDC row of that customer on that day. Drawn from a stream of
# their own, so every other generated value stays as it was without consent.
CONSENT_AT_ONBOARDING = 0.70
CONSENT_OPT_OUT_DAILY = 0.0008
CONSENT_OPT_IN_DAILY = 0.0002
_CONSENT_STREAM = 7_301


def _ts(day: dt.date, seconds: np.ndarray) -> np.ndarray:
    """Local timestamps 'YYYY-MM-DD HH:MM:SS' for seconds after the day's midnight."""
    base = np.datetime64(day.isoformat(), "s")
    text = np.datetime_as_string(base + seconds.astype("timedelta64[s]")).astype("U19")
    return np.char.replace(text, "T", " ").astype(object) if len(text) else text.astype(object)


def _ts_utc(day: dt.date, seconds: np.ndarray) -> np.ndarray:
    """UTC ISO 8601 ('...Z') for local (UTC+8) seconds after the day's midnight."""
    base = np.datetime64(day.isoformat(), "s") - np.timedelta64(8, "h")
    return np.char.add(np.datetime_as_string(base + seconds.astype("timedelta64[s]")), "Z").astype(object)


def _epoch_ms(day: dt.date, seconds: np.ndarray) -> np.ndarray:
    base = (np.datetime64(day.isoformat(), "s") - np.timedelta64(8, "h")).astype("int64")
    return (base + seconds.astype("int64")) * 1000 + (seconds * 997 % 1000).astype("int64")


def _day_seconds(rng: np.random.Generator, n: int, start: int = 7 * 3600, end: int = 23 * 3600) -> np.ndarray:
    return np.sort(rng.integers(start, end, n)) if n else np.zeros(0, dtype=np.int64)


@dataclass
class Bank:
    """The simulated bank's state; :meth:`simulate_day` advances it one business day."""

    ref: Reference
    seed: int
    start: dt.date
    days: int
    n_initial: int
    # customers
    cap: int = 0
    n: int = 0
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    # accounts
    acap: int = 0
    na: int = 0
    acc: dict[str, np.ndarray] = field(default_factory=dict)
    fx: dict[str, float] = field(default_factory=dict)
    margin: np.ndarray | None = None  # customer x month realised margin (HKD)
    open_complaints: list[tuple[int, str, str, str, str, str, int]] = field(default_factory=list)
    # Customers whose RM changed outside the day's own changes (new key customers): next CDC.
    rm_changed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # Cross-sell: (customer, product) opened the day after a campaign conversion.
    pending_opens: tuple[np.ndarray, np.ndarray] | None = None
    # Ground truth of marketing consent: (customers, date, Y/N, reason) per onboarding or change.
    consent_log: list[tuple[np.ndarray, dt.date, str, str]] = field(default_factory=list)

    # ----------------------------------------------------------------- set-up
    def _month(self, d: int) -> int:
        """Calendar month of day ``d`` counted from the start's month (0 = first month)."""
        day = self.start + dt.timedelta(days=d)
        return (day.year - self.start.year) * 12 + day.month - self.start.month

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 0])
        growth = ANNUAL_GROWTH * self.days / 365
        self.cap = int(self.n_initial * (1 + 2 * growth)) + 100
        self.acap = self.cap * 5
        a = self.arrays
        for name, dtype in [
            ("male", bool),
            ("birth", "datetime64[D]"),
            ("occ", np.int16),
            ("years_emp", np.int16),
            ("income", np.float64),
            ("role", np.int8),
            ("fam", np.int8),
            ("branch", np.int16),
            ("onboard", "datetime64[D]"),
            ("rm", np.int32),
            ("referred_by", np.int32),
            ("value", np.float64),
            ("loyalty", np.float64),
            ("p_mobile", np.float32),
            ("p_online", np.float32),
            ("p_atm", np.float32),
            ("p_branch", np.float32),
            ("sensitivity", np.float32),
            ("sat", np.float32),
            *fate.FIELDS,
            ("status", np.int8),
            ("quadrant", np.int8),
            ("area", np.int32),  # area code of the resident id: fixed at birth, not by moves
            ("consent", bool),  # marketing consent (Y) as the core holds it today
        ]:
            a[name] = np.zeros(self.cap, dtype=dtype)
        for name, dtype in [
            ("owner", np.int32),
            ("product", np.int8),
            ("currency", np.int8),
            ("open", "datetime64[D]"),
            ("close", "datetime64[D]"),
            ("status", np.int8),
            ("balance", np.float64),
            ("limit", np.float64),
        ]:
            self.acc[name] = np.zeros(self.acap, dtype=dtype)
        self.fx = dict(FX_BASE)
        self.margin = np.zeros((self.cap, self._month(self.days - 1) + 1), dtype=np.float32)
        self._product_family = np.array([p["product_family"] for p in self.ref.products])
        self._is_asset = np.array([p["is_asset"] == "true" for p in self.ref.products])
        self._margin_rate = np.array([float(p["annual_margin_rate"]) for p in self.ref.products])
        self._fee = np.array([float(p["monthly_fee_hkd"]) for p in self.ref.products])
        self._needs = np.array([float(p["needs_weight"]) for p in self.ref.products])
        self._currencies = [p["currencies"].split("|") for p in self.ref.products]
        weights = np.array([float(b["customer_weight"]) for b in self.ref.branches])
        self._branch_p = weights / weights.sum()
        self._branch_ids = np.array([b["branch_id"] for b in self.ref.branches], dtype=object)
        self._branch_city = np.array([b["city"] for b in self.ref.branches], dtype=object)
        self._branch_area = np.array([b["area_code"] for b in self.ref.branches])
        self._branch_wait = np.random.default_rng([self.seed, 1]).uniform(240, 720, len(self.ref.branches))
        self._branch_sat = np.random.default_rng([self.seed, 2]).normal(0, 0.22, len(self.ref.branches))
        self._cost = {
            (c["channel"], c["interaction_type"]): float(c["unit_cost_hkd"]) for c in self.ref.channel_costs
        }
        self._add_customers(rng, self.n_initial, self.start, initial=True)

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
        consent_rng = np.random.default_rng([self.seed, _CONSENT_STREAM, day.toordinal(), int(idx[0])])
        a["consent"][idx] = consent_rng.random(k) < CONSENT_AT_ONBOARDING
        for value in (True, False):
            self.consent_log.append((idx[a["consent"][idx] == value], day, "YN"[not value], "onboarding"))
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

    # ----------------------------------------------------------------- one day
    def simulate_day(self, d: int) -> Iterator[tuple[str, pd.DataFrame]]:
        """Yield (feed, records) for business day ``start + d``, one feed at a time.

        Frames are yielded (not collected) so the caller can write and drop each one:
        memory stays at one feed-day, not a whole day.
        """
        day = self.start + dt.timedelta(days=d)
        rng = np.random.default_rng([self.seed, 100 + d])
        a = self.arrays
        new_ids = np.zeros(0, dtype=np.int64)
        if d > 0:
            k = rng.poisson(self.n_initial * ANNUAL_GROWTH / 365)
            before = self.na
            new_ids = self._add_customers(rng, min(k, self.cap - self.n - 1), day)
            if self.pending_opens is not None:  # yesterday's campaign conversions
                owner, product = self.pending_opens
                still = a["status"][owner] < 2
                self._create_accounts(rng, owner[still], product[still], day, initial=False)
                self.pending_opens = None
            new_accounts = np.arange(before, self.na)
        else:
            new_accounts = np.arange(self.na)
        n = self.n
        alive = a["status"][:n] < 2
        sig = fate.signals(a, n, d, alive)
        fate.next_spells(self.seed, a, n, d)
        churn_today = (sig.to_churn == 0) & alive
        # What the systems see of a coming churn: 0 for no-warning churners and stayers.
        activity, pre = sig.activity, sig.signal
        changed = self._customer_changes(rng, d, day, churn_today, new_ids)
        for ids in _chunks(np.arange(n) if d == 0 else changed):
            yield "core_customers", self._customers_frame(ids, day, d, new_ids)
        closed = self._account_changes(day, churn_today)
        new_set = new_accounts
        for ids in _chunks(np.union1d(new_accounts, closed)):
            yield "core_accounts", self._accounts_frame(ids, day, d, new_set)
        yield "fx_rates", self._fx_frame(rng, day)
        postings = self._transactions(rng, d, day, sig, churn_today, new_accounts, closed)
        for frame in _frames(postings):
            yield "core_transactions", frame
        for chunk in self._balances_frames(day):
            yield "core_balances", chunk
        self._accrue_balances(d)
        touched: list[tuple[str, np.ndarray]] = []
        for feed, fn, cost in (
            ("branch_visits", self._branch_visits, ("branch", "visit")),
            ("atm_events", self._atm, ("atm", "event")),
            ("online_sessions", self._online, ("online", "session")),
            ("mobile_events", self._mobile, ("mobile", "event")),
            ("contact_calls", self._calls, ("contact_centre", "inbound_call")),
        ):
            produced = fn(rng, d, day, activity, pre)
            for frame in _frames(produced) if isinstance(produced, dict) else [produced]:
                ids = _cidx(frame["customer_id"])
                np.add.at(self.margin[:, self._month(d)], ids, -self._cost[cost])
                if feed in ("branch_visits", "contact_calls"):
                    touched.append((feed, ids))
                yield feed, frame
                del frame
            del produced
        yield "complaints", self._complaints(rng, d, day, pre, alive)
        yield "surveys", self._surveys(rng, d, day, touched, pre)
        campaigns = self._campaigns(rng, d, day, alive, pre)
        np.add.at(
            self.margin[:, self._month(d)],
            _cidx(campaigns["customer_id"]),
            -campaigns["contact_cost"].astype(float).to_numpy(),
        )
        yield "campaign_contacts", campaigns
        yield "referrals", self._referrals(rng, d, day, alive, new_ids)

    # ----------------------------------------------------------------- core banking
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

    def _consent_changes(self, day: dt.date, alive: np.ndarray, new_ids: np.ndarray) -> np.ndarray:
        """Today's opt-outs and opt-ins among customers not onboarded today; returns them."""
        a = self.arrays
        n = self.n
        rng = np.random.default_rng([self.seed, _CONSENT_STREAM, day.toordinal()])
        draw = rng.random(n)
        eligible = alive.copy()
        eligible[new_ids] = False
        consent = a["consent"][:n]
        opt_out = np.flatnonzero(eligible & consent & (draw < CONSENT_OPT_OUT_DAILY))
        opt_in = np.flatnonzero(eligible & ~consent & (draw < CONSENT_OPT_IN_DAILY))
        a["consent"][opt_out] = False
        a["consent"][opt_in] = True
        self.consent_log.append((opt_out, day, "N", "opt_out"))
        self.consent_log.append((opt_in, day, "Y", "opt_in"))
        return np.union1d(opt_out, opt_in)

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

    # ----------------------------------------------------------------- channels
    def _events(self, rng, activity, share, rate) -> np.ndarray:
        a = self.arrays
        lam = rate * a[share][: self.n] * activity
        return np.repeat(np.arange(self.n), rng.poisson(lam))

    def _branch_visits(self, rng, d, day, activity, pre) -> pd.DataFrame:
        a = self.arrays
        who = self._events(rng, activity, "p_branch", 0.05)
        m = len(who)
        branch = a["branch"][who]
        wait = np.round(rng.exponential(self._branch_wait[branch] * (1 + 1.5 * pre[who]))).astype(int)
        wait = np.minimum(wait, 7200)
        service = np.minimum(np.round(rng.gamma(3, 200, m)).astype(int), 7200)
        ticket = _day_seconds(rng, m, 9 * 3600, 16 * 3600)
        services = np.array(
            [
                "cash",
                "account_opening",
                "wealth_advice",
                "loan",
                "card_service",
                "foreign_exchange",
                "enquiry",
                "complaint",
            ]
        )
        stype = services[rng.choice(8, m, p=[0.3, 0.06, 0.12, 0.06, 0.14, 0.08, 0.2, 0.04])]
        return pd.DataFrame(
            {
                "ticket_id": np.char.add(f"Q{d + 1:04d}", _zfill(np.arange(1, m + 1).astype("U8"), 8)),
                "branch_id": self._branch_ids[branch],
                "customer_id": _cid(who),
                "ticket_time": _ts(day, ticket),
                "called_time": _ts(day, ticket + wait),
                "completed_time": _ts(day, ticket + wait + service),
                "wait_seconds": wait,
                "service_seconds": service,
                "service_type": stype,
                "staff_id": np.char.add("S", _zfill(rng.integers(1, 400, m).astype("U4"), 4)),
                "remark": REMARKS[rng.integers(0, len(REMARKS), m)],
            }
        )

    def _atm(self, rng, d, day, activity, pre) -> pd.DataFrame:
        a = self.arrays
        who = self._events(rng, activity, "p_atm", 0.16)
        m = len(who)
        kinds = np.array(["WITHDRAWAL", "DEPOSIT", "INQUIRY", "FAILURE"])
        kind = kinds[rng.choice(4, m, p=[0.55, 0.15, 0.24, 0.06])]
        amount = np.where(np.isin(kind, ["WITHDRAWAL", "DEPOSIT"]), rng.integers(1, 50, m) * 10000, 0)
        branch = a["branch"][who]
        return pd.DataFrame(
            {
                "event_id": np.char.add(f"E{d + 1:05d}", _zfill(np.arange(1, m + 1).astype("U9"), 9)),
                "terminal_id": np.char.add(
                    "ATM", _zfill((branch * 10 + rng.integers(0, 8, m)).astype("U5"), 5)
                ),
                "branch_id": self._branch_ids[branch],
                "event_time_utc": _ts_utc(day, _day_seconds(rng, m, 6 * 3600, 23 * 3600)),
                "customer_id": _cid(who),
                "event_type": kind,
                "amount_minor": np.where(np.isin(kind, ["WITHDRAWAL", "DEPOSIT"]), amount.astype(str), ""),
                "currency": np.where(np.isin(kind, ["WITHDRAWAL", "DEPOSIT"]), "CNY", ""),
                "failure_code": np.where(
                    kind == "FAILURE", np.array(["E01", "E07", "E12"])[rng.integers(0, 3, m)], ""
                ),
            }
        )

    def _online(self, rng, d, day, activity, pre) -> pd.DataFrame:
        who = self._events(rng, activity, "p_online", 0.45)
        m = len(who)
        start = _day_seconds(rng, m, 6 * 3600, 23 * 3600)
        dur = rng.integers(60, 1800, m)
        result = np.array(["success", "failed_password", "locked"])[rng.choice(3, m, p=[0.95, 0.045, 0.005])]
        ok = result == "success"
        return pd.DataFrame(
            {
                "session_id": np.char.add(f"OS{d + 1:05d}-", np.arange(1, m + 1).astype("U9")),
                "customer_id": _cid(who),
                "login_at": _ts_utc(day, start),
                "logout_at": np.where(ok, _ts_utc(day, np.minimum(start + dur, 86399)), None),
                "page_views": np.where(ok, rng.integers(1, 40, m), 0),
                "transactions": np.where(ok, rng.poisson(0.6, m), 0),
                "browser": np.array(["chrome", "edge", "safari", "firefox", "360se"])[rng.integers(0, 5, m)],
                "login_result": result,
            }
        )

    def _mobile(self, rng, d, day, activity, pre) -> pd.DataFrame:
        a = self.arrays
        sessions = self._events(rng, activity, "p_mobile", 0.55)
        per = rng.integers(1, 4, len(sessions))  # events between login and logout
        who = np.repeat(sessions, per + 2)
        m = len(who)
        start = np.repeat(_day_seconds(rng, len(sessions), 6 * 3600, 23 * 3600), per + 2)
        step = np.concatenate([np.arange(k + 2) for k in per]) if len(per) else np.zeros(0, dtype=np.int64)
        mids = np.array(["view_balance", "transfer", "bill_payment", "card_control", "investment_view"])
        kind = mids[rng.choice(5, m, p=[0.5, 0.2, 0.15, 0.05, 0.1])].astype(object)
        first = step == 0
        last = np.concatenate([step[1:] == 0, [True]]) if m else np.zeros(0, dtype=bool)
        kind[first] = "login"
        kind[last & ~first] = "logout"
        os_ = np.where(a["male"][who] ^ (who % 3 == 0), "android", "ios")
        os_ = np.where(who % 11 == 0, "harmonyos", os_)
        return dict(
            {
                "event_id": np.char.add(f"ME{d + 1:05d}-", np.arange(1, m + 1).astype("U9")),
                "customer_id": _cid(who),
                "event_ts_ms": _epoch_ms(day, np.minimum(start + step * 20, 86399)),
                "event_type": kind,
                "app_version": np.array(["6.2.0", "6.3.1", "6.4.0"])[who % 3],
                "os": os_,
            }
        )

    def _calls(self, rng, d, day, activity, pre) -> pd.DataFrame:
        a = self.arrays
        n = self.n
        lam = (0.012 + 0.05 * pre) * np.where(activity > 0, 1, 0) * (0.5 + a["sensitivity"][:n])
        who = np.repeat(np.arange(n), rng.poisson(lam))
        m = len(who)
        outbound = rng.random(m) < 0.2
        reasons = np.array(
            [
                "balance_enquiry",
                "card_issue",
                "complaint",
                "loan_enquiry",
                "fraud_report",
                "product_info",
                "retention",
                "other",
            ]
        )
        p_complaint = np.clip(0.06 + 0.5 * pre[who], 0, 0.8)
        reason = np.where(
            rng.random(m) < p_complaint,
            "complaint",
            reasons[rng.choice(8, m, p=[0.3, 0.2, 0.0, 0.1, 0.04, 0.2, 0.0, 0.16])],
        )
        reason = np.where(outbound, np.where(pre[who] > 0.3, "retention", "sales"), reason)
        fcr = rng.random(m) < (0.78 - 0.45 * pre[who])
        return pd.DataFrame(
            {
                "call_id": np.char.add(f"K{d + 1:04d}", _zfill(np.arange(1, m + 1).astype("U8"), 8)),
                "customer_id": _cid(who),
                "direction": np.where(outbound, "outbound", "inbound"),
                "started_at": _ts(day, _day_seconds(rng, m, 8 * 3600, 22 * 3600)),
                "queue_seconds": np.where(
                    outbound, 0, np.minimum(rng.exponential(90 * (1 + pre[who]), m), 3600).astype(int)
                ),
                "handle_seconds": np.minimum(rng.gamma(2.5, 120, m), 7200).astype(int),
                "reason": reason,
                "first_contact_resolution": np.where(fcr, "true", "false"),
                "transfers": np.where(fcr, 0, rng.integers(0, 3, m)),
                "agent_id": np.char.add("AG", _zfill(rng.integers(1, 300, m).astype("U4"), 4)),
            }
        )

    def _complaints(self, rng, d, day, pre, alive) -> pd.DataFrame:
        a = self.arrays
        n = self.n
        lam = (0.004 / 30) * (1 + 12 * pre) * alive * (0.5 + a["sensitivity"][:n])
        who = np.repeat(np.arange(n), rng.poisson(lam))
        m = len(who)
        rows = []
        cats = np.array(
            ["fees", "service", "wait_time", "product", "system_outage", "staff", "fraud", "other"]
        )
        chans = np.array(["branch", "atm", "online", "mobile", "contact_centre", "rm"])
        base = len(self.open_complaints) + 1000 * d
        opened = _day_seconds(rng, m, 8 * 3600, 20 * 3600)
        for k, cust in enumerate(who.tolist()):
            cid = f"CP{d + 1:04d}{k + 1:06d}"
            cat = str(cats[rng.choice(8, p=[0.22, 0.2, 0.18, 0.14, 0.08, 0.08, 0.03, 0.07])])
            chan = str(chans[rng.choice(6, p=[0.35, 0.05, 0.1, 0.15, 0.3, 0.05])])
            sev = str(np.array(["low", "medium", "high"])[rng.choice(3, p=[0.5, 0.38, 0.12])])
            opened_at = _ts(day, np.array([opened[k]]))[0]
            days_to_resolve = int(
                rng.choice([0, 1, 2, 3, 5, 8, 13], p=[0.35, 0.2, 0.15, 0.1, 0.1, 0.06, 0.04])
            )
            if days_to_resolve == 0:
                rows.append(
                    (
                        cid,
                        cust,
                        opened_at,
                        chan,
                        cat,
                        sev,
                        "resolved",
                        _ts(day, np.array([min(opened[k] + 3600, 86399)]))[0],
                        "true",
                    )
                )
            else:
                rows.append((cid, cust, opened_at, chan, cat, sev, "open", "", ""))
                self.open_complaints.append((d + days_to_resolve, cid, cust, opened_at, chan, cat, sev))
        del base
        still = []
        for item in self.open_complaints:
            due, cid, cust, opened_at, chan, cat, sev = item
            if due == d:
                rows.append(
                    (
                        cid,
                        cust,
                        opened_at,
                        chan,
                        cat,
                        sev,
                        "resolved",
                        _ts(day, np.array([15 * 3600]))[0],
                        "false",
                    )
                )
            else:
                still.append(item)
        self.open_complaints = still
        frame = pd.DataFrame(
            rows,
            columns=[
                "complaint_id",
                "customer",
                "opened_at",
                "channel",
                "category",
                "severity",
                "status",
                "resolved_at",
                "first_contact_resolution",
            ],
        )
        frame.insert(1, "customer_id", _cid(frame.pop("customer").to_numpy(dtype=np.int64)))
        return frame[
            [
                "complaint_id",
                "customer_id",
                "opened_at",
                "channel",
                "category",
                "severity",
                "status",
                "resolved_at",
                "first_contact_resolution",
            ]
        ]

    def _surveys(self, rng, d, day, touched_by: list[tuple[str, np.ndarray]], pre) -> pd.DataFrame:
        a = self.arrays
        # Survey invitations after a branch visit or a call, ~10 % respond; plus digital pulses.
        touched = np.concatenate([ids for _, ids in touched_by])
        chan = np.concatenate(
            [
                np.full(len(ids), "branch" if feed == "branch_visits" else "contact_centre")
                for feed, ids in touched_by
            ]
        )
        digital = np.flatnonzero(rng.random(self.n) < 0.0008 * (a["status"][: self.n] < 2))
        touched = np.concatenate([touched, digital])
        chan = np.concatenate(
            [chan, np.where(a["p_mobile"][digital] > a["p_online"][digital], "mobile", "online")]
        )
        respond = rng.random(len(touched)) < 0.10
        who, chan = touched[respond], chan[respond]
        m = len(who)
        branch = a["branch"][who]
        mu = 4.2 + a["sat"][who] + self._branch_sat[branch] * (chan == "branch") - 0.9 * pre[who]

        def item(shift: float, spread: float) -> np.ndarray:
            return np.clip(np.round(rng.normal(mu + shift, spread)), 1, 5).astype(int)

        return pd.DataFrame(
            {
                "survey_id": np.char.add(f"S{d + 1:04d}", _zfill(np.arange(1, m + 1).astype("U6"), 6)),
                "customer_id": _cid(who),
                "branch_id": np.where(chan == "branch", self._branch_ids[branch], ""),
                "channel": chan,
                "responded_at": _ts(day, _day_seconds(rng, m, 10 * 3600, 22 * 3600)),
                "overall_satisfaction": item(0.0, 0.75),
                "likely_to_continue": item(0.15, 0.8),
                "likely_to_recommend": item(-0.05, 0.85),
                "easy_to_do_business": item(0.0, 0.8),
                "understands_needs": item(-0.15, 0.85),
            }
        )

    def _campaigns(self, rng, d, day, alive, pre) -> pd.DataFrame:
        """Contacts from the campaigns in ref_campaigns.csv; loyal customers respond more,
        customers showing churn precursors less. A conversion opens the offered product
        the next day (cross-sell)."""
        a = self.arrays
        camps = self.ref.campaigns
        reach = np.array([float(c["daily_reach"]) for c in camps])
        who = np.flatnonzero(alive & (rng.random(self.n) < reach.sum()))
        m = len(who)
        pick = rng.choice(len(camps), m, p=reach / reach.sum())
        base = np.array([float(c["base_response"]) for c in camps])[pick]
        uplift = np.array([float(c["loyal_uplift"]) for c in camps])[pick]
        responded = rng.random(m) < (1 - 0.7 * pre[who]) * (base + uplift * a["loyalty"][who])
        converted = responded & (rng.random(m) < 0.35)
        offered = np.array([c["offered_product_code"] for c in camps])[pick]
        codes = self.ref.product_codes
        product = np.array([codes.index(c["offered_product_code"]) for c in camps], dtype=np.int8)[pick]
        if converted.any():
            self.pending_opens = (who[converted], product[converted])
        return pd.DataFrame(
            {
                "contact_id": np.char.add(f"M{d + 1:04d}", _zfill(np.arange(1, m + 1).astype("U8"), 8)),
                "campaign_id": np.array([c["campaign_id"] for c in camps])[pick],
                "customer_id": _cid(who),
                "channel": np.array([c["channel"] for c in camps])[pick],
                "offered_product_code": offered,
                "contacted_at": _ts(day, _day_seconds(rng, m, 9 * 3600, 20 * 3600)),
                "contact_cost": np.array([c["contact_cost_hkd"] for c in camps])[pick],
                "responded": np.where(responded, "true", "false"),
                "converted": np.where(converted, "true", "false"),
            }
        )

    def _referrals(self, rng, d, day, alive, new_ids) -> pd.DataFrame:
        """Referrals registered today: today's new customers who came by word of mouth
        (opened_account, the same referrer as their core record), plus introductions
        loyal customers made that are still pending or were declined."""
        a = self.arrays
        came = new_ids[a["referred_by"][new_ids] >= 0] if len(new_ids) else np.zeros(0, dtype=np.int64)
        open_ = np.flatnonzero(alive & (rng.random(self.n) < 0.0003 * a["loyalty"][: self.n]))
        referrer = np.concatenate([a["referred_by"][came], open_]).astype(np.int64)
        referred = np.concatenate([came, np.full(len(open_), -1)]).astype(np.int64)
        m = len(referrer)
        status = np.where(
            referred >= 0, "opened_account", np.where(rng.random(m) < 0.7, "pending", "declined")
        )
        order = np.argsort(rng.random(m), kind="stable")
        return pd.DataFrame(
            {
                "referral_id": np.char.add(f"R{d + 1:04d}", _zfill(np.arange(1, m + 1).astype("U6"), 6)),
                "referrer_customer_id": _cid(referrer[order]),
                "referred_customer_id": np.where(
                    referred[order] >= 0, _cid(np.maximum(referred[order], 0)), ""
                ),
                "referred_at": _ts(day, _day_seconds(rng, m, 9 * 3600, 21 * 3600)),
                "status": status[order],
            }
        )

    # ----------------------------------------------------------------- truth
    def _accrue_balances(self, d: int) -> None:
        """Realised margin (HKD) from balances and fees; channel and campaign costs are
        subtracted where those records are produced."""
        c = self.acc
        na = self.na
        live = c["status"][:na] == 0
        rate_hkd = np.array([self.fx[x] for x in CURRENCIES])[c["currency"][:na]]
        daily = np.abs(c["balance"][:na]) * rate_hkd * self._margin_rate[c["product"][:na]] / 365
        daily += self._fee[c["product"][:na]] / 30
        np.add.at(self.margin[:, self._month(d)], c["owner"][:na][live], daily[live])

    def truth_frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        a = self.arrays
        n = self.n
        churn_date, churn_type = fate.truth(a, n, self.start, self.days)
        pref = np.stack([a["p_mobile"][:n], a["p_online"][:n], a["p_atm"][:n], a["p_branch"][:n]], axis=1)
        customers = pd.DataFrame(
            {
                "customer_id": _cid(np.arange(n)),
                "lv_quadrant": QUADRANTS[a["quadrant"][:n]],
                "value_potential_hkd": np.round(a["value"][:n], 2),
                "loyalty": np.round(a["loyalty"][:n], 4),
                "channel_preference": np.array(["mobile", "online", "atm", "branch"])[pref.argmax(axis=1)],
                "service_sensitivity": np.round(a["sensitivity"][:n], 4),
                "churn_date": churn_date,
                "churn_type": churn_type,
                "onboarding_date": np.datetime_as_string(a["onboard"][:n]),
            }
        )
        rows = []
        for mth in range(self.margin.shape[1]):
            year, month = divmod(self.start.month - 1 + mth, 12)
            first = dt.date(self.start.year + year, month + 1, 1)
            # Customers who existed by the month's end (onboarded later: no row).
            end = min(self.start + dt.timedelta(days=self.days - 1), _month_end(first))
            there = np.flatnonzero(a["onboard"][:n] <= np.datetime64(end.isoformat()))
            rows.append(
                pd.DataFrame(
                    {
                        "customer_id": _cid(there),
                        "month": first.isoformat()[:7],
                        "margin_hkd": np.round(self.margin[there, mth], 2),
                    }
                )
            )
        return customers, pd.concat(rows, ignore_index=True)

    def consent_truth(self) -> pd.DataFrame:
        """Every customer's consent at onboarding (or at the start, for the initial book) and
        every later opt-out and opt-in, by date: the consent each day's lists must honour."""
        parts = [
            pd.DataFrame(
                {
                    "customer_id": _cid(idx),
                    "change_date": day.isoformat(),
                    "marketing_consent": value,
                    "reason": why,
                }
            )
            for idx, day, value, why in self.consent_log
            if len(idx)
        ]
        columns = ["customer_id", "change_date", "marketing_consent", "reason"]
        if not parts:
            return pd.DataFrame(columns=columns)
        frame = pd.concat(parts, ignore_index=True)
        return frame.sort_values(["change_date", "customer_id"], kind="stable", ignore_index=True)[columns]


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


def _month_end(first: dt.date) -> dt.date:
    nxt = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return nxt - dt.timedelta(days=1)


def _cid(idx: np.ndarray) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64)
    return np.char.add("C", _zfill((idx + 1).astype("U9"), 9)) if len(idx) else np.zeros(0, dtype="U10")


def _cidx(ids) -> np.ndarray:
    arr = np.asarray(ids, dtype="U10")
    return (
        (np.char.lstrip(np.char.lstrip(arr, "C"), "0").astype(np.int64) - 1)
        if len(arr)
        else np.zeros(0, dtype=np.int64)
    )


def _currency_mix(allowed: list[str]) -> np.ndarray:
    weights = np.array([{"CNY": 0.8, "HKD": 0.15, "USD": 0.05}[c] for c in allowed])
    return weights / weights.sum()


def _keyed_rng(seed: int, idx: np.ndarray, salt: int) -> np.random.Generator:
    """A generator whose draws depend only on (seed, salt) and the customer numbers."""
    return np.random.default_rng([seed, salt, int(idx.sum()) if len(idx) else 0, len(idx)])


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


CHUNK = 200_000  # rows per frame for the per-customer / per-account feeds: bounds memory


def _frames(columns: dict) -> Iterator[pd.DataFrame]:
    """Turn column arrays into DataFrames of at most CHUNK rows (pandas copies strings)."""
    n = max((len(v) for v in columns.values() if not np.isscalar(v)), default=0)
    for lo in range(0, max(n, 1), CHUNK):
        yield pd.DataFrame({k: v if np.isscalar(v) else v[lo : lo + CHUNK] for k, v in columns.items()})


def _chunks(ids: np.ndarray) -> Iterator[np.ndarray]:
    """Fixed-size slices (at least one, possibly empty), so every feed gets a file with a header."""
    for lo in range(0, max(len(ids), 1), CHUNK):
        yield ids[lo : lo + CHUNK]


def _zfill(values: np.ndarray, width: int) -> np.ndarray:
    """np.char.zfill that accepts empty arrays (a day can have no rows for a feed)."""
    return np.char.zfill(values, width) if len(values) else np.zeros(0, dtype=f"U{width}")
