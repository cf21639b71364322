"""Complaints, satisfaction surveys, campaign contacts (conversions open the offered product
the next day) and referrals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm.generator.records import _cid, _day_seconds, _ts, _zfill


class Engagement:
    """Complaints, surveys, campaigns and referrals of :class:`crm.generator.bank.Bank`'s customers."""

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
