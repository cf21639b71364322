"""Ground truth the pipeline never loads: realised margin by customer and month, and each
customer's latent segment, traits and fate.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from crm.generator import fate
from crm.generator.accounts import CURRENCIES
from crm.generator.records import _cid

QUADRANTS = np.array(["A", "B", "C", "D"])


def _month_end(first: dt.date) -> dt.date:
    nxt = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return nxt - dt.timedelta(days=1)


class Truth:
    """Realised margin (``self.margin``) and the truth frames of :class:`crm.generator.bank.Bank`."""

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
