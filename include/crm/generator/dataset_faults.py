"""Dataset-level defects: every line stays valid but the dataset day's data is wrong as a
whole, for a quality gate to notice (:class:`DatasetFaults`, mixed into
:class:`crm.generator.faults.FaultInjector`; the kinds are listed in :mod:`crm.generator.faults`).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import numpy as np

from crm.feeds import Column, Feed
from crm.generator.feed_files import PLAIN_DECIMAL, _Table, _table, control_path
from crm.quality.history import MIN_SAMPLE

# Sources whose feeds carry the bank's books: dataset defects there go through
# balance_break / segment_collapse / control_mismatch, never the channel-feed kinds.
BOOK_SOURCES = frozenset({"core", "treasury"})
VOLUME_KEPT = 0.4  # volume_drop keeps this share of the rows
NULL_SHARE = 0.9  # null_spike empties this share of the column
TRB_TIERS = (("Premier", 1_000_000.0), ("Advance", 100_000.0), ("Personal", float("-inf")))


class DatasetFaults:
    """Dataset defects of :class:`crm.generator.faults.FaultInjector` (``self.dataset`` on
    ``self.dataset_day``; ``self.shifts``: balance changes that stay)."""

    def _dataset_faults(self, day: dt.date, paths: dict[Feed, Path]) -> None:
        rng = np.random.default_rng([self.seed, 779, day.toordinal()])
        by_name = {f.name: (f, p) for f, p in paths.items()}
        # Channel feeds, busiest first (ties: registry order); each kind takes its own feed,
        # the most demanding kinds first (a money column with room; an optional column).
        channel = [(f, p) for f, p in paths.items() if f.source not in BOOK_SOURCES and p.exists()]
        channel.sort(key=lambda fp: -_table(fp[0], fp[1]).rows)
        used: set[str] = set()

        def free(ok: Callable[[Feed, _Table], bool] = lambda f, t: True) -> tuple[Feed, Path, _Table] | None:
            for f, p in channel:
                if f.name not in used:
                    table = _table(f, p)
                    if table.rows and ok(f, table):
                        used.add(f.name)
                        return f, p, table
            return None

        if "segment_collapse" in self.dataset:
            self._segment_collapse(day, by_name, rng)
        if "balance_break" in self.dataset:
            self._balance_break(day, by_name, rng)
        if "unit_shift" in self.dataset:
            picked = free(lambda f, t: t.rows >= MIN_SAMPLE and _shiftable(f, t) is not None)
            if picked is None:
                raise RuntimeError(f"unit_shift: no channel feed of {day} has a money column with room x100")
            feed, path, table = picked
            col = _shiftable(feed, table)
            pos = table.header.index(col)
            for rec in table.records:
                if rec[pos] != "":
                    rec[pos] = _times_100(rec[pos])
            table.write(path)
            self._log(feed, day, self._rel(path), None, "unit_shift", col, factor=100)
        if "null_spike" in self.dataset:
            feed, path, table = _need(free(lambda f, t: _fillable(f, t) is not None), "null_spike", day)
            col = _fillable(feed, table)
            pos = table.header.index(col)
            filled = [r for r in table.records if r[pos] != ""]
            before = 1 - len(filled) / table.rows
            for r in filled:
                if rng.random() < NULL_SHARE:
                    r[pos] = ""
            after = sum(r[pos] == "" for r in table.records) / table.rows
            table.write(path)
            self._log(
                feed,
                day,
                self._rel(path),
                None,
                "null_spike",
                col,
                null_share_before=round(before, 4),
                null_share_after=round(after, 4),
            )
        if "volume_drop" in self.dataset:
            feed, path, table = _need(free(), "volume_drop", day)
            before = table.rows
            table.records = table.records[: max(1, int(before * VOLUME_KEPT))]
            table.write(path)
            self._log(
                feed, day, self._rel(path), None, "volume_drop", rows_before=before, rows_after=table.rows
            )
        if "stale_repeat" in self.dataset:
            prev = day - dt.timedelta(days=1)

            def repeatable(f: Feed, t: _Table) -> bool:
                old = self.out / f.name / prev.isoformat() / f.file
                return old.exists() and old.stat().st_size > 0

            feed, path, _ = _need(free(repeatable), "stale_repeat", day)
            shutil.copyfile(self.out / feed.name / prev.isoformat() / feed.file, path)
            self._log(feed, day, self._rel(path), None, "stale_repeat", repeated_from=prev.isoformat())

    def _control_mismatch(self, day: dt.date, paths: dict[Feed, Path]) -> None:
        for feed, path in paths.items():
            cpath = control_path(path)
            if feed.control is None or not cpath.exists():
                continue
            doc = json.loads(cpath.read_text())
            for col, by_currency in doc["sums"].items():
                if by_currency:
                    currency = sorted(by_currency)[0]
                    actual = by_currency[currency]
                    by_currency[currency] = str(Decimal(actual) + Decimal("100.00"))
                    cpath.write_text(json.dumps(doc, sort_keys=True) + "\n")
                    self._log(
                        feed,
                        day,
                        self._rel(path),
                        None,
                        "control_mismatch",
                        col,
                        currency=currency,
                        control_sum=by_currency[currency],
                        file_sum=actual,
                    )
                    return
        raise RuntimeError(f"control_mismatch: no file of {day} has money to total")

    def _balance_break(self, day: dt.date, by_name: dict, rng: np.random.Generator) -> None:
        feed, path = by_name["core_balances"]
        prev = self.out / feed.name / (day - dt.timedelta(days=1)).isoformat() / feed.file
        table = _table(feed, path)
        known = {r[1] for r in _table(feed, prev).records} if prev.exists() else set()
        pos = table.header.index("ledger_balance")
        acc = table.header.index("account_id")
        candidates = [r for r in table.records if r[acc] in known and r[acc] not in self.shifts]
        if not candidates:
            raise RuntimeError(f"balance_break: no account of {day} has a balance the day before")
        rec = candidates[int(rng.integers(0, len(candidates)))]
        expected = Decimal(rec[pos])
        delta = max(Decimal("1000.00"), (abs(expected) * Decimal("0.05")).quantize(Decimal("0.01")))
        self.shifts[rec[acc]] = delta
        _shift_record(table, rec, delta)
        table.write(path)
        self._log(
            feed,
            day,
            self._rel(path),
            None,
            "balance_break",
            account_id=rec[acc],
            expected_balance=str(expected),
            actual_balance=rec[pos],
        )

    def _segment_collapse(self, day: dt.date, by_name: dict, rng: np.random.Generator) -> None:
        """Most customers of the top populated TRB tier move 90 % of every positive balance
        to another bank on one day; the outflows are posted, so balances still roll forward."""
        bal_feed, bal_path = by_name["core_balances"]
        txn_feed, txn_path = by_name["core_transactions"]
        acc_feed = by_name["core_accounts"][0]
        owner: dict[str, str] = {}
        for folder in sorted((self.out / acc_feed.name).iterdir()):
            if dt.date.fromisoformat(folder.name) <= day:
                accounts = _table(acc_feed, folder / acc_feed.file)
                a, c = accounts.header.index("account_id"), accounts.header.index("customer_id")
                owner.update((r[a], r[c]) for r in accounts.records)
        fx_feed, fx_path = by_name["fx_rates"]
        fx = _table(fx_feed, fx_path)
        rate = {r[fx.header.index("currency")]: float(r[fx.header.index("rate")]) for r in fx.records}
        table = _table(bal_feed, bal_path)
        h = table.header
        acc, cur, led = h.index("account_id"), h.index("currency"), h.index("ledger_balance")

        def tiers() -> dict[str, str]:
            trb: dict[str, float] = {}
            for r in table.records:
                who = owner[r[acc]]
                trb[who] = trb.get(who, 0.0) + float(r[led]) * rate[r[cur]]
            return {who: next(name for name, low in TRB_TIERS if v >= low) for who, v in trb.items()}

        before = tiers()
        counts = {name: sum(t == name for t in before.values()) for name, _ in TRB_TIERS}
        segment = next(name for name, _ in TRB_TIERS if counts[name] >= 5)
        members = sorted(who for who, t in before.items() if t == segment)
        chosen = {who for who in members if rng.random() < 0.7}
        txns = _table(txn_feed, txn_path)
        t = txns.header
        d = self.days.index(day) + 1
        moved = 0
        for r in table.records:
            if owner[r[acc]] in chosen and Decimal(r[led]) > 0:
                out = min(
                    (Decimal(r[led]) * Decimal("0.9")).quantize(Decimal("0.01")), Decimal("49000000.00")
                )
                if out < Decimal("0.01"):
                    continue
                moved += 1
                self.shifts[r[acc]] = self.shifts.get(r[acc], Decimal(0)) - out
                _shift_record(table, r, -out)
                row = dict.fromkeys(t, "")
                row |= {
                    "txn_id": f"T{d:05d}{900_000_000 + moved:09d}",
                    "account_id": r[acc],
                    "posted_at": f"{day.isoformat()} 22:{moved // 60 % 60:02d}:{moved % 60:02d}",
                    "value_date": day.isoformat(),
                    "amount": f"{out:.2f}",
                    "currency": r[cur],
                    "direction": "D",
                    "txn_type": "transfer_out",
                    "channel": "online",
                    "counterparty_bank": "CMB",
                    "fee": f"{min(out * Decimal('0.001'), Decimal(50)):.2f}",
                }
                txns.records.append([row[x] for x in t])
        table.write(bal_path)
        txns.write(txn_path)
        after = tiers()
        n = len(before)
        share = {
            name: (sum(x == name for x in before.values()) / n, sum(x == name for x in after.values()) / n)
            for name, _ in TRB_TIERS
        }
        self._log(
            bal_feed,
            day,
            self._rel(bal_path),
            None,
            "segment_collapse",
            segment=segment,
            customers=len(chosen),
            accounts=moved,
            share_before={k: round(v[0], 4) for k, v in share.items()},
            share_after={k: round(v[1], 4) for k, v in share.items()},
        )

    def _shift_balances(self, feed: Feed, path: Path) -> None:
        """Carry the dataset day's balance changes into a later day's balances."""
        feed_table = _table(feed, path)
        acc = feed_table.header.index("account_id")
        for r in feed_table.records:
            if r[acc] in self.shifts:
                _shift_record(feed_table, r, self.shifts[r[acc]])
        feed_table.write(path)


def _times_100(value: str) -> str:
    number = Decimal(value) * 100
    places = len(value.split(".")[1]) if "." in value else 0
    return f"{number:.{places}f}"


def _shift_record(table: _Table, rec: list[str], delta: Decimal) -> None:
    """Add ``delta`` to a balance record's ledger balance, and to its available balance."""
    for name in ("ledger_balance", "available_balance"):
        pos = table.header.index(name)
        if PLAIN_DECIMAL.match(rec[pos]):
            rec[pos] = f"{Decimal(rec[pos]) + delta:.2f}"


def _money_columns(feed: Feed) -> list[Column]:
    named = set(feed.control.amounts) if feed.control else set()
    return [c for c in feed.columns if c.name in named or c.type == "numeric"]


def _shiftable(feed: Feed, table: _Table) -> str | None:
    """A money column whose values, times 100, stay within the registry's bounds and
    whose typical magnitude moves (not mostly zero)."""
    for col in _money_columns(feed):
        pos = table.header.index(col.name)
        values = sorted(Decimal(r[pos]) for r in table.records if PLAIN_DECIMAL.match(r[pos]))
        if not values or values[len(values) // 2] <= 0:
            continue
        if (col.max is None or values[-1] * 100 <= Decimal(str(col.max))) and (
            col.min is None or values[0] * 100 >= Decimal(str(col.min))
        ):
            return col.name
    return None


def _fillable(feed: Feed, table: _Table) -> str | None:
    """The optional column that is most often filled (at least 90 % of rows, MIN_SAMPLE rows)."""
    if table.rows < MIN_SAMPLE:
        return None
    best, share = None, 0.9
    for col in feed.columns:
        if col.required or col.name in feed.key:
            continue
        pos = table.header.index(col.name)
        filled = sum(r[pos] != "" for r in table.records) / table.rows
        if filled >= share and (best is None or filled > share):
            best, share = col.name, filled
    return best


def _need(picked: tuple[Feed, Path, _Table] | None, kind: str, day: dt.date) -> tuple[Feed, Path, _Table]:
    if picked is None:
        raise RuntimeError(f"{kind}: no free channel feed of {day} fits (too small a bank?)")
    return picked
