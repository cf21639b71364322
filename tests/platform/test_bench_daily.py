"""The daily-run bench compares a range run with single-day runs by content checksums: they
must ignore when things ran and catch any change in what was produced."""

from __future__ import annotations


def test_content_checksums_ignore_run_times_and_catch_content(warehouse, db):
    from crm.bench_daily import content_checksums

    db.execute("create table marts.bench_probe (customer_id text, score numeric, scored_at timestamptz)")
    db.execute("insert into marts.bench_probe values ('C1', 0.5, now()), ('C2', 0.25, now())")
    before = content_checksums(warehouse)
    assert before["marts.bench_probe"][0] == 2
    db.execute("update marts.bench_probe set scored_at = scored_at + interval '1 day'")
    assert content_checksums(warehouse) == before, "a run time is not content"
    db.execute("update marts.bench_probe set score = 0.26 where customer_id = 'C2'")
    after = content_checksums(warehouse)
    assert after["marts.bench_probe"] != before["marts.bench_probe"]
    assert {k: v for k, v in after.items() if k != "marts.bench_probe"} == {
        k: v for k, v in before.items() if k != "marts.bench_probe"
    }
