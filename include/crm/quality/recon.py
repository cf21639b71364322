"""Reconciliation of a day to the source systems' control records, and balances that roll.

Core-banking systems send a control record with every extract: beside
``<landing>/<feed>/<day>/<file>`` lies ``<file>.control.json`` with the file's row count
and, for money feeds (the registry's ``control`` block), the sum of each amount column per
currency. The day reconciles when

- ``rows``: the control's row count = the file's data lines = rows loaded + quarantined;
- ``amounts``: per amount column and currency, the sum over loaded rows plus the sum over
  quarantined lines whose value is still readable equals the control's sum, to the cent;
- ``balance_roll_forward``: per account, balance(d-1) + credits(d) - debits(d) = balance(d)
  (an account without a balance row has balance 0: opened, or closed and paid out).

A break that a quarantined line explains (a posting of that account sits in quarantine) is
recorded as explained (the reconciliation gate warns); any other break is critical. Breaks
are written row by row to ``dq.reconciliation_breaks``; the GX suite ``recon.breaks`` then
judges them with the severity its expectations declare.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from psycopg import Connection, sql

from crm.feeds import Feed, Registry, load_registry
from crm.ingest.rules import NUMERIC_SHAPE

CONTROL_SUFFIX = ".control.json"
CENT = Decimal("0.01")
_PLAIN = re.compile(f"(?:{NUMERIC_SHAPE})")


@dataclass(frozen=True)
class Break:
    feed: str
    check: str  # recon.rows | recon.amounts | recon.balance_roll_forward
    item: str  # the file, "<column> <currency>" or the account id
    expected: Decimal | None
    actual: Decimal | None
    explained_by: str | None = None

    @property
    def difference(self) -> Decimal | None:
        if self.expected is None or self.actual is None:
            return None
        return self.actual - self.expected


def control_path(landing: Path, feed: Feed, day: dt.date) -> Path:
    return landing / feed.name / day.isoformat() / (feed.file + CONTROL_SUFFIX)


def _quarantined_values(conn: Connection, feed: Feed, day: dt.date, landing: Path, columns: list[str]):
    """The readable values of ``columns`` on the day's quarantined lines, as dicts."""
    lines = [
        r[0]
        for r in conn.execute(
            sql.SQL("select raw_line from quarantine.{} where _business_date = %s").format(
                sql.Identifier(feed.name)
            ),
            (day,),
        )
    ]
    if not lines:
        return []
    if feed.format == "jsonl":
        rows = []
        for line in lines:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                rows.append({c: None if doc.get(c) is None else str(doc.get(c)) for c in columns})
        return rows
    path = landing / feed.name / day.isoformat() / feed.file
    with open(path, encoding=feed.encoding, errors="replace", newline="") as fh:
        header = next(csv.reader([fh.readline().lstrip("\ufeff").rstrip("\r\n")], delimiter=feed.delimiter))
    rows = []
    for fields in csv.reader(lines, delimiter=feed.delimiter, quotechar=feed.quotechar):
        if len(fields) == len(header):
            row = dict(zip(header, fields, strict=True))
            rows.append({c: row.get(c) for c in columns})
    return rows


def _amount_breaks(conn: Connection, feed: Feed, day: dt.date, landing: Path, control: dict) -> list[Break]:
    spec = feed.control
    got: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for column in spec.amounts:
        for currency, total in conn.execute(
            sql.SQL(
                "select coalesce({cur}, ''), sum({col}) from raw.{t} where _business_date = %s group by 1"
            ).format(
                cur=sql.Identifier(spec.currency), col=sql.Identifier(column), t=sql.Identifier(feed.name)
            ),
            (day,),
        ):
            got[(column, currency)] += total or 0
    for row in _quarantined_values(conn, feed, day, landing, [*spec.amounts, spec.currency]):
        for column in spec.amounts:
            value = (row.get(column) or "").strip()
            if _PLAIN.fullmatch(value):
                got[(column, row.get(spec.currency) or "")] += Decimal(value)
    expected = {
        (column, currency): Decimal(total)
        for column, per_currency in control.get("sums", {}).items()
        for currency, total in per_currency.items()
    }
    return [
        Break(feed.name, "recon.amounts", f"{column} {currency}", expected.get(key), got.get(key, Decimal(0)))
        for key in sorted(set(expected) | set(got), key=str)
        for column, currency in [key]
        if expected.get(key, Decimal(0)).quantize(CENT) != got.get(key, Decimal(0)).quantize(CENT)
    ]


def _row_breaks(conn: Connection, feed: Feed, day: dt.date, control: dict) -> list[Break]:
    load = conn.execute(
        "select rows_in_file, rows_loaded + rows_quarantined from audit.load_log"
        " where feed = %s and business_date = %s and status = 'loaded' order by load_id desc limit 1",
        (feed.name, day),
    ).fetchone()
    in_file, accounted = load if load else (None, None)
    if control["rows"] == in_file == accounted:
        return []
    actual = None if accounted is None else Decimal(accounted)
    return [Break(feed.name, "recon.rows", feed.file, Decimal(control["rows"]), actual)]


# Each balance-moving feed's signed movement of a row: a day rolls forward when, per account,
# balance(d-1) + net postings(d) - balance(d) = 0.
MOVEMENT = {
    "core_balances": "ledger_balance",
    "core_transactions": "case direction when 'C' then amount else -amount end",
}
HASH_WEIGHT = "mod(hashtext(account_id), 1000003)"

ROLL_FORWARD = f"""
with prev as (select account_id, {MOVEMENT["core_balances"]} as v from raw.core_balances where _business_date = %(prev)s),
cur as (select account_id, {MOVEMENT["core_balances"]} as v from raw.core_balances where _business_date = %(day)s),
net as (
    select account_id, sum({MOVEMENT["core_transactions"]}) as v
    from raw.core_transactions where _business_date = %(day)s group by account_id
)
select account_id, coalesce(prev.v, 0) + coalesce(net.v, 0) as expected, coalesce(cur.v, 0) as actual
from prev full join cur using (account_id) full join net using (account_id)
where coalesce(prev.v, 0) + coalesce(net.v, 0) <> coalesce(cur.v, 0)
order by account_id
"""


def totals_sql(feed: str) -> list[sql.Composable]:
    """The day's totals of a balance-moving feed, as aggregates over its raw rows: the sum of
    the movement, the same weighted by a hash of the account, and the load summed.

    A day that rolls forward leaves every account's residual balance(d-1) + net(d) - balance(d)
    at 0, so both sums of the residuals are 0, and each is a sum of these per-feed totals
    (B(d-1) + T(d) - B(d)). Compensating breaks (+100 on one account, -100 on another) cancel
    in the plain sum but not in the weighted one unless the two hashes collide (odds of 1 in
    10^6). The raw gate computes these in its profile pass (``crm.quality.profile``), which
    reads every row anyway, and keeps them in ``dq.day_totals``; only a day that does not
    roll forward pays for the join that names the accounts."""
    movement = MOVEMENT[feed]
    return [
        sql.SQL(f"coalesce(sum({movement}), 0)"),
        sql.SQL(f"coalesce(sum(({movement}) * {HASH_WEIGHT}), 0)"),
        sql.SQL("max(_load_id)"),
    ]


def _totals(conn: Connection, loads: dict[tuple[str, dt.date], int]) -> dict[tuple[str, dt.date], tuple]:
    """(total, weighted) of each (feed, day) in ``loads``: the raw gate's, when it summed that
    very load, else summed from raw now (the gate did not run, or the day was reloaded since)."""
    stored = {
        (feed, day): (total, weighted)
        for feed, day, load_id, total, weighted in conn.execute(
            "select feed, business_date, load_id, total, weighted from dq.day_totals"
            " where (feed, business_date, load_id) in (select * from unnest(%s::text[], %s::date[], %s::bigint[]))",
            ([f for f, _ in loads], [d for _, d in loads], list(loads.values())),
        )
    }
    for feed, day in loads.keys() - stored.keys():
        query = sql.SQL("select {} from raw.{} where _business_date = %s").format(
            sql.SQL(", ").join(totals_sql(feed)[:2]), sql.Identifier(feed)
        )
        stored[(feed, day)] = tuple(conn.execute(query, (day,)).fetchone())
    return stored


def _roll_forward_breaks(conn: Connection, registry: Registry, day: dt.date, landing: Path) -> list[Break]:
    prev = day - dt.timedelta(days=1)
    loads = {
        (feed, d): load_id
        for feed, d, load_id in conn.execute(
            "select feed, business_date, max(load_id) from audit.load_log where status = 'loaded'"
            " and feed in ('core_balances', 'core_transactions') and business_date in (%s, %s) group by 1, 2",
            (prev, day),
        )
    }
    needed = [("core_balances", prev), ("core_transactions", day), ("core_balances", day)]
    if not set(needed) <= loads.keys():
        return []  # the first day, or a feed refused: nothing to roll forward from
    totals = _totals(conn, {k: loads[k] for k in needed})
    (b_prev, w_prev), (t_day, w_txn), (b_day, w_day) = (totals[k] for k in needed)
    if b_prev + t_day - b_day == 0 and w_prev + w_txn - w_day == 0:
        return []
    rows = conn.execute(ROLL_FORWARD, {"prev": prev, "day": day}).fetchall()
    if not rows:
        return []
    txns = registry.feed("core_transactions")
    held = {r["account_id"] for r in _quarantined_values(conn, txns, day, landing, ["account_id"])}
    balances = registry.feed("core_balances")
    held |= {r["account_id"] for r in _quarantined_values(conn, balances, day, landing, ["account_id"])}
    return [
        Break(
            "core_balances",
            "recon.balance_roll_forward",
            account,
            expected,
            actual,
            "a quarantined line of this account" if account in held else None,
        )
        for account, expected, actual in rows
    ]


def reconcile(conn: Connection, day: dt.date, landing: Path, registry: Registry | None = None) -> list[Break]:
    """Every break of ``day``; replaces the day's rows in ``dq.reconciliation_breaks``."""
    registry = registry or load_registry()
    breaks: list[Break] = []
    for feed in registry.load_order():
        path = control_path(landing, feed, day)
        if not path.is_file():
            continue
        control = json.loads(path.read_text(encoding="utf-8"))
        breaks += _row_breaks(conn, feed, day, control)
        if feed.control is not None:
            breaks += _amount_breaks(conn, feed, day, landing, control)
    breaks += _roll_forward_breaks(conn, registry, day, landing)
    with conn.transaction():
        conn.execute("delete from dq.reconciliation_breaks where business_date = %s", (day,))
        with conn.cursor() as cur:
            cur.executemany(
                "insert into dq.reconciliation_breaks (business_date, feed, check_name, item, expected, actual,"
                " difference, explained_by) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (day, b.feed, b.check, b.item, b.expected, b.actual, b.difference, b.explained_by)
                    for b in breaks
                ],
            )
    return breaks
