"""Write-audit-publish: BI sees a day only after it was published (its mart gate passed)."""

from __future__ import annotations

import datetime as dt

import psycopg

from crm.quality.publish import publish, published_through
from crm.transform import build
from crm.warehouse import role_url

from .bank import DAYS, START, load_days

DAY_GRAINED = {
    "customer_segments": "snapshot_date",
    "customer_360": "snapshot_date",
    "fct_daily_balances": "business_date",
    "fct_transactions": "business_date",
    "fct_interactions": "business_date",
    "fct_customer_activity_daily": "business_date",
    "branch_activity_daily": "local_date",
    "segment_migration": "month_start",
    "channel_usage": "month_start",
    "ml_features_customer_monthly": "month_start",
}


# Marts holding one current state (rebuilt every day): kept beside the published state.
CURRENT_STATE = ("dim_customer", "cross_sell_opportunities", "rm_worklist", "service_quality")


def bi_relations() -> list[str]:
    """Every table and view crm_bi_reader may select from, in any schema."""
    with psycopg.connect(role_url("crm_bi_reader")) as bi:
        rows = bi.execute(
            "select format('%I.%I', n.nspname, c.relname) from pg_class c"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where c.relkind in ('r', 'p', 'v', 'm') and n.nspname not in ('pg_catalog', 'information_schema')"
            " and has_table_privilege(c.oid, 'select') order by 1"
        ).fetchall()
    return [r[0] for r in rows]


def bi_checksums() -> dict[str, tuple[int, str]]:
    """What crm_bi_reader reads of every relation it may read: row count and a hash of every row."""
    with psycopg.connect(role_url("crm_bi_reader")) as bi:
        return {
            name: bi.execute(
                f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from {name} t"
            ).fetchone()
            for name in bi_relations()
        }


def test_bi_sees_a_day_only_once_it_is_published_and_a_full_refresh_keeps_it(built, db):
    built_day = START + dt.timedelta(days=DAYS - 2)
    assert published_through() is None
    assert {f"marts.{t}" for t in (*DAY_GRAINED, *CURRENT_STATE)} <= set(bi_relations())
    unpublished = bi_checksums()
    assert all(unpublished[f"marts.{t}"][0] == 0 for t in (*DAY_GRAINED, *CURRENT_STATE)), "nothing published"
    publish(built_day)
    before = bi_checksums()
    assert all(before[f"marts.{t}"][0] > 0 for t in ("customer_segments", "fct_transactions", *CURRENT_STATE))

    new_day = START + dt.timedelta(days=DAYS - 1)
    load_days(built, range(DAYS - 1, DAYS))
    build(new_day)  # built and tested, not published (say its mart gate failed)
    owner = db.execute("select count(*) from marts.customer_segments where snapshot_date = %s", (new_day,))
    assert owner.fetchone()[0] > 0, "the owner inspects the unpublished day"
    for mart in CURRENT_STATE:
        states = db.execute(f"select count(distinct snapshot_date) from marts.{mart}").fetchone()[0]
        assert states == 2, f"{mart} keeps the published state beside the new one"
    after = bi_checksums()
    changed = [name for name in before if after.get(name) != before[name]]
    assert not changed and after.keys() == before.keys(), f"BI's view changed before publishing: {changed}"

    publish(new_day)
    with psycopg.connect(role_url("crm_bi_reader")) as bi:
        assert bi.execute("select max(snapshot_date) from marts.customer_segments").fetchone()[0] == new_day
    build(new_day, full_refresh=True)
    publish_days = db.execute("select count(*) from dq.published_days").fetchone()[0]
    assert publish_days == 2
    with psycopg.connect(role_url("crm_bi_reader")) as bi:
        policies = bi.execute(
            "select count(*) from pg_policies where schemaname = 'marts' and policyname = 'bi_published'"
        ).fetchone()[0]
        assert policies == len(DAY_GRAINED) + len(CURRENT_STATE), (
            "every mart keeps its policy after --full-refresh"
        )
        hidden = bi.execute(
            "select count(*) from marts.customer_segments where snapshot_date > %s", (new_day,)
        ).fetchone()[0]
        assert hidden == 0
