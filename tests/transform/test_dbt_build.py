"""The real dbt project on a real PostgreSQL, fed by the generator through the real loader."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest

from crm.ingest import load_file
from crm.transform import build, generate_docs, plan_build, run_dbt
from crm.warehouse import role_url

from .bank import DAYS, REG, START, load_days


def rows_affected(result, model: str) -> int:
    for node in result.result.results:
        if node.node.name == model:
            return int(node.adapter_response.get("rows_affected", 0))
    raise KeyError(model)


def test_build_passes_and_segments_follow_the_rules(built, db):
    day = START + dt.timedelta(days=DAYS - 2)
    counts = dict(
        db.execute(
            "select abc_tier, count(*) from marts.customer_segments where snapshot_date = %s"
            " and abc_tier is not null group by 1",
            (day,),
        ).fetchall()
    )
    n = sum(counts.values())
    assert n > 300
    assert counts["high_end"] == round(0.01 * n)
    assert counts["high_end"] + counts["major"] == round(0.20 * n)
    assert counts["high_end"] + counts["major"] + counts["ordinary"] == round(0.50 * n)
    bad = db.execute(
        """select count(*) from marts.customer_segments
           where lifecycle_stage in ('new', 'active', 'dormant')
             and (lv_quadrant is null or trb_tier is null or abc_tier is null)"""
    ).fetchone()[0]
    assert bad == 0, "every active customer is in exactly one quadrant and one tier"
    tiers = {r[0] for r in db.execute("select distinct trb_tier from marts.customer_segments")}
    assert {"Premier", "Advance", "Personal"} <= tiers
    # The value pyramid is concentrated: the top 20 % hold most of the value.
    top_share = db.execute(
        """select sum(value_score) filter (where abc_tier in ('high_end', 'major')) / sum(value_score)
           from marts.customer_segments where abc_tier is not null and value_score > 0"""
    ).fetchone()[0]
    assert top_share > 0.6


def test_bi_reader_reads_every_mart_and_sees_no_clear_text_pii(built, db):
    pii = set()
    for row in db.execute("select national_id, full_name, mobile, email, address from raw.core_customers"):
        pii.update(v for v in row if v)
    marts = [
        r[0]
        for r in db.execute("select table_name from information_schema.tables where table_schema = 'marts'")
    ]
    assert len(marts) >= 15
    assert not set(SCHEMAS) & set(marts), "the marts' bookkeeping tables are not for BI"
    with psycopg.connect(role_url("crm_bi_reader")) as bi:
        for table in marts:
            cols = [
                r[0]
                for r in bi.execute(
                    "select column_name from information_schema.columns where table_schema = 'marts'"
                    " and table_name = %s and data_type in ('text', 'character varying')",
                    (table,),
                )
            ]
            assert bi.execute(f"select count(*) from marts.{table}").fetchone()[0] >= 0
            for col in cols:
                values = {r[0] for r in bi.execute(f'select distinct "{col}" from marts.{table}')}
                leaked = values & pii
                assert not leaked, f"marts.{table}.{col} holds clear-text personal data: {list(leaked)[:3]}"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bi.execute("select * from staging.stg_core__customers limit 1")


def test_national_ids_are_pseudonymised_with_a_key_no_sql_text_dbt_or_bi_role_sees(built, db):
    """dim_customer's national_id_hash is HMAC-SHA256(key, national id) with the key crm migrate
    stored (CRM_PII_SALT); the key is in no compiled SQL, dbt artefact or log, and neither the
    role dbt runs as nor the BI role can read it (migration 0013; tests/warehouse/test_pseudonyms.py)."""
    import hashlib
    import hmac

    from crm.settings import get_settings

    settings = get_settings()
    key = settings.role_password("crm_pii_salt")
    national_id, hashed = db.execute(
        "select c.national_id, d.national_id_hash from marts.dim_customer d"
        " join raw.core_customers c using (customer_id) limit 1"
    ).fetchone()
    assert hashed == hmac.new(key.encode(), national_id.encode(), hashlib.sha256).hexdigest()
    files = [p for d in (settings.dbt_target, settings.home / "logs") for p in d.rglob("*") if p.is_file()]
    assert any(p.name == "dim_customer.sql" for p in files), "the compiled SQL was written"
    leaks = [str(p) for p in files if key.encode() in p.read_bytes()]
    assert not leaks, f"the pseudonym key is in {leaks}"
    for role in ("crm_transformer", "crm_bi_reader"):
        with psycopg.connect(role_url(role)) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("select salt from private.pii_salt")
            conn.rollback()
            # The old getter, which handed dbt the salt in clear, is gone.
            with pytest.raises((psycopg.errors.UndefinedFunction, psycopg.errors.InsufficientPrivilege)):
                conn.execute("select private.pii_salt()")


def test_ml_scores_replace_the_proxies_only_from_their_as_of_date(built, db):
    day = START + dt.timedelta(days=DAYS - 2)
    scored, future = db.execute(
        "select customer_id from marts.customer_segments where snapshot_date = %s and lv_quadrant is not null"
        " order by customer_id limit 2",
        (day,),
    ).fetchall()
    rows = [(scored[0], day, 0.9, 5_000_000), (future[0], day + dt.timedelta(days=1), 0.9, 5_000_000)]
    for customer, as_of, churn, clv in rows:
        db.execute(
            "insert into ml.churn_scores (customer_id, as_of_date, churn_probability, model_version, scored_at)"
            " values (%s, %s, %s, 'test', now())",
            (customer, as_of, churn),
        )
        db.execute(
            "insert into ml.clv_scores (customer_id, as_of_date, clv_hkd, model_version, scored_at)"
            " values (%s, %s, %s, 'test', now())",
            (customer, as_of, clv),
        )

    build(day)

    segments = {
        row[0]: row[1:]
        for row in db.execute(
            "select customer_id, value_from_clv, value_score::float, abc_tier from marts.customer_segments"
            " where snapshot_date = %s and customer_id in (%s, %s)",
            (day, scored[0], future[0]),
        )
    }
    assert segments[scored[0]] == (True, 5_000_000.0, "high_end")
    assert segments[future[0]][0] is False, "a score as of a later day is not known yet on this snapshot"
    churn = dict(
        db.execute(
            "select customer_id, churn_probability::float from marts.customer_360 where snapshot_date = %s"
            " and customer_id in (%s, %s)",
            (day, scored[0], future[0]),
        ).fetchall()
    )
    assert churn == {scored[0]: 0.9, future[0]: None}


def test_docs_describe_every_mart_without_compiled_sql(built, warehouse):
    target = generate_docs(base_url=warehouse)
    catalog = json.loads((target / "catalog.json").read_text())
    manifest = json.loads((target / "manifest.json").read_text())
    marts = {n["metadata"]["name"] for n in catalog["nodes"].values() if n["metadata"]["schema"] == "marts"}
    assert {"customer_360", "customer_segments", "rm_worklist", "dim_customer"} <= marts
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model" and node["config"]["schema"] == "marts":
            assert node["description"], f"{node['name']} has no description"
            assert all(c["description"] for c in node["columns"].values()), (
                f"{node['name']}: undescribed column"
            )
            assert not node.get("compiled_code"), (
                f"{node['name']}: compiled SQL (with the PII salt) in the docs"
            )


def test_next_day_touches_only_that_day(built, db):
    before = db.execute(
        "select business_date, count(*), sum(balance_hkd) from marts.fct_daily_balances group by 1 order by 1"
    ).fetchall()
    last = START + dt.timedelta(days=DAYS - 1)
    load_days(built, range(DAYS - 1, DAYS))
    result = build(last)
    new_rows = db.execute(
        "select count(*) from marts.fct_daily_balances where business_date = %s", (last,)
    ).fetchone()[0]
    assert new_rows > 0
    assert rows_affected(result, "fct_daily_balances") == new_rows
    after = db.execute(
        "select business_date, count(*), sum(balance_hkd) from marts.fct_daily_balances"
        " where business_date < %s group by 1 order by 1",
        (last,),
    ).fetchall()
    assert after == before, "earlier days must not change"
    # The daily run analyzed the new day (macro analyze_built_relation): the planner's
    # statistics of the date key reach it, and the row count is the table's.
    latest, reltuples = db.execute(
        "select (select max(d) from unnest(coalesce(histogram_bounds::text::date[], '{}')"
        " || coalesce(most_common_vals::text::date[], '{}')) as d), c.reltuples"
        " from pg_stats s join pg_class c on c.relname = s.tablename"
        " join pg_namespace n on n.oid = c.relnamespace and n.nspname = s.schemaname"
        " where s.schemaname = 'marts' and s.tablename = 'fct_daily_balances' and s.attname = 'business_date'"
    ).fetchone()
    assert latest == last
    rows = sum(count for _, count, _ in before) + new_rows
    assert abs(reltuples - rows) <= 0.01 * rows, (reltuples, rows)
    snapshots = [r[0] for r in db.execute("select distinct snapshot_date from marts.customer_360 order by 1")]
    assert snapshots == [last - dt.timedelta(days=1), last]
    # SCD2 versions start on the business day built, not on the wall-clock time of the build.
    valid_from = {
        r[0] for r in db.execute("select distinct dbt_valid_from::date from snapshots.customers_snapshot")
    }
    assert valid_from == {last - dt.timedelta(days=1), last} or valid_from == {last - dt.timedelta(days=1)}


# The marts a daily run builds incrementally or from incremental parents, and the rows of
# each that a full refresh for the same run date rebuilds (snapshot marts: that day's).
# customer_activity_window is the marts' bookkeeping, in the schema intermediate (SCHEMAS).
INCREMENTAL_MARTS = {
    "fct_customer_activity_daily": "true",
    "customer_activity_window": "snapshot_date = %(day)s",
    "customer_360": "snapshot_date = %(day)s",
    "customer_segments": "snapshot_date = %(day)s",
    "cross_sell_opportunities": "snapshot_date = %(day)s",
    "rm_worklist": "snapshot_date = %(day)s",
    "channel_usage": "true",
    "branch_activity_daily": "true",
    "service_quality": "snapshot_date = %(day)s",
    "segment_migration": "true",
    "ml_features_customer_monthly": "true",
}


# Models outside the BI-visible schema marts.
SCHEMAS = {"customer_activity_window": "intermediate", "interaction_local_days": "intermediate"}


def mart_rows(db, day: dt.date, marts: dict[str, str] = INCREMENTAL_MARTS) -> dict[str, list[tuple]]:
    return {
        table: sorted(
            db.execute(
                f"select * from {SCHEMAS.get(table, 'marts')}.{table} where {where}", {"day": day}
            ).fetchall(),
            key=repr,
        )
        for table, where in marts.items()
    }


def build_window(day: dt.date, window: int, *, full_refresh: bool = False, select: str):
    """``dbt build`` of ``select`` for ``day`` with an activity window of ``window`` days."""
    variables = {"run_date": day.isoformat(), "activity_window_days": window}
    if not full_refresh:
        variables["test_window_start"] = day.isoformat()
    return run_dbt(
        [
            "build",
            "--vars",
            json.dumps(variables),
            "--select",
            select,
            *(["--full-refresh"] if full_refresh else []),
        ]
    )


def test_a_window_rolled_forward_day_by_day_equals_the_window_summed(built, db):
    """A 3-day window: two daily runs each add the new day and drop the day that left the
    window; the result equals summing the window afresh (a full refresh)."""
    marts = {"customer_activity_window": "snapshot_date = %(day)s", "customer_360": "snapshot_date = %(day)s"}
    first, last = START + dt.timedelta(days=DAYS - 3), START + dt.timedelta(days=DAYS - 1)
    build_window(first, 3, full_refresh=True, select="customer_activity_window customer_360")
    load_days(built, range(DAYS - 1, DAYS))
    for day in (first + dt.timedelta(days=1), last):
        result = build_window(day, 3, select="+customer_360")
        window_sql = next(
            n.node.compiled_code for n in result.result.results if n.node.name == "customer_activity_window"
        )
        assert "leaving" in window_sql, "the daily run rolled the previous day's window forward"
    rolled = mart_rows(db, last, marts)
    build_window(last, 3, full_refresh=True, select="customer_activity_window customer_360")
    summed = mart_rows(db, last, marts)
    assert len(summed["customer_activity_window"]) > 300
    left = db.execute(
        "select count(*) from marts.fct_customer_activity_daily where business_date = %s and txn_count > 0",
        (last - dt.timedelta(days=3),),
    ).fetchone()[0]
    assert left > 0, "the day that left the window had activity to take out"
    for table in marts:
        assert rolled[table] == summed[table], f"{table}: the rolled window differs from the summed one"


def test_a_changed_window_length_is_summed_afresh_not_rolled(built, db):
    """The built snapshot has the default window (90 days). A daily run with a 3-day window
    must not roll that row forward (90 days + the new day - the day 3 days back): it sums
    the 3 days, as a full refresh does."""
    marts = {"customer_activity_window": "snapshot_date = %(day)s"}
    last = START + dt.timedelta(days=DAYS - 1)
    load_days(built, range(DAYS - 1, DAYS))
    result = build_window(last, 3, select="customer_activity_window")
    window_sql = next(
        n.node.compiled_code for n in result.result.results if n.node.name == "customer_activity_window"
    )
    assert "leaving" not in window_sql, "the 90-day row of the day before was not rolled forward"
    daily = mart_rows(db, last, marts)
    build_window(last, 3, full_refresh=True, select="customer_activity_window")
    summed = mart_rows(db, last, marts)
    assert daily == summed
    assert {row[2] for row in summed["customer_activity_window"]} == {3}, "window_days says 3"


def test_next_day_with_a_late_day_equals_a_full_refresh(built, db):
    last = START + dt.timedelta(days=DAYS - 1)
    late_day = START + dt.timedelta(days=2)
    load_days(built, range(DAYS - 1, DAYS))
    redeliver_late(built, db, "core_transactions", late_day)
    # What the daily run must put back: the late day's per-customer totals.
    db.execute("delete from marts.fct_customer_activity_daily where business_date = %s", (late_day,))
    build(last)
    incremental = mart_rows(db, last)
    build(last, full_refresh=True)
    full = mart_rows(db, last)
    assert all(full.values()), f"every mart has rows: {[t for t, rows in full.items() if not rows]}"
    for table in INCREMENTAL_MARTS:
        assert incremental[table] == full[table], f"{table}: a daily run differs from a full refresh"


def test_a_late_ticket_of_last_month_enters_and_leaves_the_local_date_marts(built, db, tmp_path):
    """Day 8's branch file first carries a ticket of 31 December (another local date, in
    another month); delivered again without it, the daily run takes it out again. Both
    daily runs equal a full refresh of branch_activity_daily and channel_usage."""
    last = START + dt.timedelta(days=DAYS - 1)
    feed = REG.feed("branch_visits")
    original = built / feed.name / last.isoformat() / feed.file
    header, first, *_ = original.read_bytes().split(b"\n")
    fields = dict(zip(header.decode("ascii").split(feed.delimiter), first.split(b";"), strict=True))
    fields |= {
        "ticket_id": b"Q999999999999",
        "ticket_time": b"2025-12-31 10:00:00",
        "called_time": b"2025-12-31 10:05:00",
        "completed_time": b"2025-12-31 10:15:00",
    }
    with_late = tmp_path / feed.file
    with_late.write_bytes(original.read_bytes() + b";".join(fields.values()) + b"\n")
    marts = {"branch_activity_daily": "true", "channel_usage": "true"}
    load_days(built, range(DAYS - 1, DAYS))

    for path, late_rows in ((with_late, 1), (original, 0)):
        with psycopg.connect(role_url("crm_loader")) as conn:
            assert load_file(conn, feed, last, path, force=True).rows_loaded > 0
        build(last)
        daily = mart_rows(db, last, marts)
        december = db.execute(
            "select (select count(*) from marts.branch_activity_daily where local_date = '2025-12-31'),"
            " (select count(*) from marts.channel_usage where month_start = '2025-12-01')"
        ).fetchone()
        assert december == (late_rows, late_rows), "the late ticket's day and month follow the file"
        build(last, full_refresh=True)
        assert mart_rows(db, last, marts) == daily, "the daily run equals a full refresh"


def test_a_day_delivered_again_empty_leaves_no_old_rows_in_its_facts(built, db, tmp_path):
    """dbt's delete+insert deletes only the days its new rows hold: a day delivered again
    with no transactions (header only) must still lose the transactions it had."""
    last = START + dt.timedelta(days=DAYS - 1)
    feed = REG.feed("core_transactions")
    load_days(built, range(DAYS - 1, DAYS))
    build(last)
    count = "select count(*) from marts.fct_transactions where business_date = %s"
    assert db.execute(count, (last,)).fetchone()[0] > 0
    original = built / feed.name / last.isoformat() / feed.file
    empty = tmp_path / feed.file
    empty.write_bytes(original.read_bytes().split(b"\n", 1)[0] + b"\n")
    with psycopg.connect(role_url("crm_loader")) as conn:
        assert load_file(conn, feed, last, empty, force=True).rows_in_file == 0
    build(last)
    assert db.execute(count, (last,)).fetchone()[0] == 0


def test_rerunning_an_earlier_day_after_a_later_one_reproduces_it(built, db):
    """A re-run of day 7 once day 8 is built passes its tests and gives day 7's snapshot
    marts back exactly as they were. (Its tests cover only the days it built: on a larger
    bank, day-8 rows of customers onboarded on day 8 failed the relationships tests
    against dim_customer rebuilt as of day 7; this small bank may have no such customer.)"""
    earlier = START + dt.timedelta(days=DAYS - 2)
    snapshot_marts = {
        "customer_activity_window": "snapshot_date = %(day)s",
        "customer_360": "snapshot_date = %(day)s",
        "customer_segments": "snapshot_date = %(day)s",
        # current state, rebuilt whole from the surveys and complaints known then; kept
        # beside the published state (keep_published_snapshot)
        "service_quality": "snapshot_date = %(day)s",
    }
    before = mart_rows(db, earlier, snapshot_marts)
    load_days(built, range(DAYS - 1, DAYS))
    build(earlier + dt.timedelta(days=1))
    build(earlier)  # raises if a test fails
    after = mart_rows(db, earlier, snapshot_marts)
    assert all(before.values())
    for table in snapshot_marts:
        assert after[table] == before[table], f"{table}: re-running {earlier} changed its rows"


def test_a_run_without_a_date_plans_the_last_loaded_day_and_its_late_days(built, db):
    last_loaded = START + dt.timedelta(days=DAYS - 2)
    assert plan_build() == {
        "run_date": last_loaded.isoformat(),
        "test_window_start": last_loaded.isoformat(),
        "last_request_id": 0,
    }
    late_day = START + dt.timedelta(days=2)
    redeliver_late(built, db, "core_transactions", late_day)
    plan = plan_build()
    assert (plan["run_date"], plan["test_window_start"]) == (last_loaded.isoformat(), late_day.isoformat())
    assert plan["last_request_id"] > 0


def test_late_partition_is_reprocessed_then_marked(built, db):
    late_day = START + dt.timedelta(days=2)
    redeliver_late(built, db, "core_transactions", late_day)
    before = db.execute(
        "select count(*) from marts.fct_transactions where business_date = %s", (late_day,)
    ).fetchone()[0]
    db.execute("delete from marts.fct_transactions where business_date = %s", (late_day,))
    build(START + dt.timedelta(days=DAYS - 2))
    after = db.execute(
        "select count(*) from marts.fct_transactions where business_date = %s", (late_day,)
    ).fetchone()[0]
    assert after == before > 0, "the late day is rebuilt"
    pending = db.execute(
        "select count(*) from audit.reprocess_requests where processed_at is null"
    ).fetchone()[0]
    assert pending == 0


def redeliver_late(landing, db, feed_name: str, day: dt.date) -> None:
    """Load a day's partition again after later days: the loader raises a reprocess request."""
    feed = REG.feed(feed_name)
    db.execute("delete from audit.load_log where feed = %s and business_date = %s", (feed_name, day))
    with psycopg.connect(role_url("crm_loader")) as conn:
        result = load_file(conn, feed, day, landing / feed.name / day.isoformat() / feed.file)
    assert result.late
