"""The sample bank's latent model and its day-by-day behaviour.

Every customer has hidden traits (value potential from demographics, loyalty,
channel preference, service sensitivity, satisfaction) and a pre-drawn fate (churn
day and type, and how much of it shows beforehand: :mod:`crm.generator.fate`).
Each simulated day turns those traits into the channel systems' records.

State lives in numpy arrays (one slot per customer / account), so a million
customers fit in a few hundred MB and a day costs time linear in the customers.

:class:`Bank` holds that state and runs the day; what each part does lives in a module
of its own, mixed into :class:`Bank`: :mod:`~crm.generator.customers` (the customer book),
:mod:`~crm.generator.consent`, :mod:`~crm.generator.accounts` (accounts, balances, FX),
:mod:`~crm.generator.postings`, :mod:`~crm.generator.channels`,
:mod:`~crm.generator.engagement` (complaints, surveys, campaigns, referrals) and
:mod:`~crm.generator.truth`; :mod:`~crm.generator.records` formats ids and timestamps.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crm.generator import fate
from crm.generator.accounts import FX_BASE, AccountBook
from crm.generator.channels import Channels
from crm.generator.consent import ConsentBook
from crm.generator.customers import CustomerBook
from crm.generator.engagement import Engagement
from crm.generator.postings import Postings
from crm.generator.records import _chunks, _cidx, _frames
from crm.generator.reference import Reference
from crm.generator.truth import Truth

ANNUAL_GROWTH = 0.14  # new customers a year, as a share of the book


@dataclass
class Bank(CustomerBook, ConsentBook, AccountBook, Postings, Channels, Engagement, Truth):
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
