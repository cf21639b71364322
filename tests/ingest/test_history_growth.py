"""The reference check reads a key table instead of every daily partition of raw (so a day's
load does not slow down as history grows); it must refuse exactly what the anti-join
against raw refused, reloads included. Timings are ``make bench``'s (crm.ingest.bench),
not asserted here."""

from __future__ import annotations

import datetime as dt

import pytest
from psycopg import sql

from crm.ingest import FileRefused, load_file
from crm.ingest.checks import unknown_reference
from crm.ingest.tables import ensure_all_tables

from .test_loader import CUSTOMERS, REG, VISITS, customer_row, visit_row, write_csv

D = [dt.date(2026, 1, 5) + dt.timedelta(days=i) for i in range(6)]  # D[1] is day 1, ...
KEYS = "raw.keys__core_customers__customer_id"


def customers(tmp_path, loader_conn, day: dt.date, ids: list[int], clean_copy: bool = True):
    rows = [customer_row(i, updated_at=f"{day} 09:00:00") for i in ids]
    path = write_csv(tmp_path / f"c_{day}_{'-'.join(map(str, ids))}.csv", CUSTOMERS.column_names, rows)
    return load_file(loader_conn, CUSTOMERS, day, path, force=True, clean_copy=clean_copy)


def visits(tmp_path, loader_conn, day: dt.date, ids: list[int], clean_copy: bool = True):
    rows = [
        visit_row(ticket_id=f"Q{n:012d}", customer_id=f"C{i:09d}", ticket_time=f"{day} 09:00:00")
        for n, i in enumerate(ids, 1)
    ]
    path = write_csv(tmp_path / f"v_{day}.csv", VISITS.column_names, rows, delimiter=";")
    return load_file(loader_conn, VISITS, day, path, clean_copy=clean_copy)


def first_days(db) -> dict[str, dt.date]:
    return dict(db.execute(f"select customer_id, first_business_date from {KEYS}").fetchall())


def raw_first_days(db) -> dict[str, dt.date]:
    """What the anti-join against raw answered: each customer's earliest day in raw."""
    return dict(
        db.execute("select customer_id, min(_business_date) from raw.core_customers group by 1").fetchall()
    )


def unknown_by_raw(db, ids: list[str], day: dt.date) -> set[str]:
    """The reference check before the key tables (kept here verbatim as the specification)."""
    rows = db.execute(
        "select s.customer_id from unnest(%s::text[]) s(customer_id) where s.customer_id is not null"
        " and not exists (select 1 from raw.core_customers r where r.customer_id = s.customer_id"
        " and r._business_date <= %s)",
        (ids, day),
    ).fetchall()
    return {r[0] for r in rows}


def unknown_now(db, ids: list[str], day: dt.date) -> set[str]:
    """The loader's reference check as it is (``unknown_reference``) on the same values."""
    test = unknown_reference(VISITS.column("customer_id"), REG, day)
    query = sql.SQL("select s.customer_id from unnest(%s::text[]) s(customer_id) where {}").format(test)
    return {r[0] for r in db.execute(query, (ids,)).fetchall()}


@pytest.mark.parametrize("clean_copy", [True, False], ids=["clean_path", "row_path"])
def test_a_customer_delivered_after_the_day_is_still_an_unknown_reference(
    tmp_path, loader_conn, db, clean_copy
):
    """A visit on day 2 by a customer first delivered on day 3 is quarantined with
    UNKNOWN_REFERENCE, on either path; on day 3 the same customer is known."""
    customers(tmp_path, loader_conn, D[1], [1], clean_copy)
    customers(tmp_path, loader_conn, D[3], [2], clean_copy)
    early = visits(tmp_path, loader_conn, D[2], [1, 2], clean_copy)
    assert (early.rows_loaded, early.reasons) == (1, {"UNKNOWN_REFERENCE": 1})
    reason = db.execute("select reason, column_name from quarantine.branch_visits").fetchall()
    assert reason == [("UNKNOWN_REFERENCE", "customer_id")]
    on_time = visits(tmp_path, loader_conn, D[3], [1, 2], clean_copy)
    assert (on_time.rows_loaded, on_time.rows_quarantined) == (2, 0)
    assert on_time.method == ("copy" if clean_copy else "rows")


@pytest.mark.parametrize("clean_copy", [True, False], ids=["clean_path", "row_path"])
def test_reloading_a_day_keeps_the_answer_the_raw_anti_join_gave(tmp_path, loader_conn, db, clean_copy):
    """Customers 2, 3, 4 first come on day 3 (loaded after day 5, which has 3 too).
    Reloading day 5, or day 3 with the same file, keeps them known from day 3; reloading it without 2 and 3 (and with a new 5)
    makes 2 unknown on every day and 3 known from day 5 only: on every day, for every
    customer, the check answers what the anti-join against raw answers."""
    customers(tmp_path, loader_conn, D[1], [1], clean_copy)
    customers(tmp_path, loader_conn, D[5], [3], clean_copy)
    customers(tmp_path, loader_conn, D[3], [2, 3, 4], clean_copy)  # late: after day 5
    customers(tmp_path, loader_conn, D[5], [3], clean_copy)  # a later day again: 3 stays day 3
    assert first_days(db) == raw_first_days(db)
    customers(tmp_path, loader_conn, D[3], [2, 3, 4], clean_copy)  # the same day again
    assert (first_days(db)["C000000003"], first_days(db)["C000000004"]) == (D[3], D[3])
    assert first_days(db) == raw_first_days(db)

    customers(tmp_path, loader_conn, D[3], [4, 5], clean_copy)  # corrected: 2 and 3 gone
    assert first_days(db) == raw_first_days(db)
    assert first_days(db) == {"C000000001": D[1], "C000000003": D[5], "C000000004": D[3], "C000000005": D[3]}
    ids = [f"C{i:09d}" for i in range(1, 7)]
    for day in D:
        assert unknown_now(db, ids, day) == unknown_by_raw(db, ids, day), day
    assert unknown_now(db, ids, D[4]) == {"C000000002", "C000000003", "C000000006"}

    result = visits(tmp_path, loader_conn, D[4], [2, 3, 4], clean_copy)
    assert (result.rows_loaded, result.reasons) == (1, {"UNKNOWN_REFERENCE": 2})


def test_a_refused_reload_leaves_the_key_table_as_it_was(tmp_path, loader_conn, db):
    """The key table changes in the load's transaction: a reload refused for too many bad
    rows rolls its changes back with the partition's."""
    customers(tmp_path, loader_conn, D[1], [1, 2, 3])
    before = first_days(db)
    rows = [customer_row(i, gender="?") for i in range(4, 40)]
    path = write_csv(tmp_path / "bad.csv", CUSTOMERS.column_names, rows)
    with pytest.raises(FileRefused):
        load_file(loader_conn, CUSTOMERS, D[1], path)
    assert first_days(db) == before == raw_first_days(db)


def test_bootstrap_builds_a_missing_key_table_from_raw(tmp_path, loader_conn, db):
    """A warehouse whose raw predates the key tables gets them, filled from raw, at bootstrap
    (``ensure_all_tables``), and the loader may maintain them afterwards."""
    customers(tmp_path, loader_conn, D[1], [1, 2])
    customers(tmp_path, loader_conn, D[2], [2, 3])
    db.execute(f"drop table {KEYS}")
    ensure_all_tables(db, REG)
    assert (
        first_days(db) == raw_first_days(db) == {"C000000001": D[1], "C000000002": D[1], "C000000003": D[2]}
    )
    customers(tmp_path, loader_conn, D[1], [1])
    assert first_days(db) == raw_first_days(db)
