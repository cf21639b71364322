"""Marketing consent (PIPL): consent at onboarding, daily opt-outs and opt-ins, and its truth."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from crm.generator.records import _cid

# Marketing consent (PIPL): the share who consent at onboarding, then each day a share of
# the consenting customers opts out and a smaller share of the others opts in; every change
# reaches the core extract as a CDC row of that customer on that day. Drawn from a stream of
# their own, so every other generated value stays as it was without consent.
CONSENT_AT_ONBOARDING = 0.70
CONSENT_OPT_OUT_DAILY = 0.0008
CONSENT_OPT_IN_DAILY = 0.0002
_CONSENT_STREAM = 7_301


class ConsentBook:
    """Each customer's marketing consent (``arrays['consent']``) and its log (``consent_log``)."""

    def _onboarding_consent(self, idx: np.ndarray, day: dt.date) -> None:
        """Consent of customers ``idx`` onboarded on ``day``, drawn from the consent stream."""
        a = self.arrays
        k = len(idx)
        consent_rng = np.random.default_rng([self.seed, _CONSENT_STREAM, day.toordinal(), int(idx[0])])
        a["consent"][idx] = consent_rng.random(k) < CONSENT_AT_ONBOARDING
        for value in (True, False):
            self.consent_log.append((idx[a["consent"][idx] == value], day, "YN"[not value], "onboarding"))

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
