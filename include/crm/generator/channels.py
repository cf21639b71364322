"""Channel events: branch queue tickets, ATM events, online sessions, mobile app events and
contact-centre calls, driven by each customer's channel preference and activity.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm.generator.records import _cid, _day_seconds, _epoch_ms, _ts, _ts_utc, _zfill

REMARKS = np.array(["", "", "", "", "客户满意", "办理较快", "等候时间长", "VIP客户", "需回访"])


class Channels:
    """The channel systems' records of :class:`crm.generator.bank.Bank`'s customers."""

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
