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


def bi_checksums() -> dict[str, tuple[int, str]]:
    """What crm_bi_reader reads of each day-grained mart: row count and a hash of every row."""
    with psycopg.connect(role_url("crm_bi_reader")) as bi:
        return {
            table: bi.execute(
                f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from marts.{table} t"
            ).fetchone()
            for table in DAY_GRAINED
        }


def test_bi_sees_a_day_only_once_it_is_published_and_a_full_refresh_keeps_it(built, db):
    built_day = START + dt.timedelta(days=DAYS - 2)
    assert published_through() is None
    assert all(n == 0 for n, _ in bi_checksums().values()), "nothing published: BI sees no day"
    publish(built_day)
    before = bi_checksums()
    assert before["customer_segments"][0] > 0 and before["fct_transactions"][0] > 0

    new_day = START + dt.timedelta(days=DAYS - 1)
    load_days(built, range(DAYS - 1, DAYS))
    build(new_day)  # built and tested, not published (say its mart gate failed)
    owner = db.execute("select count(*) from marts.customer_segments where snapshot_date = %s", (new_day,))
    assert owner.fetchone()[0] > 0, "the owner inspects the unpublished day"
    assert bi_checksums() == before, "BI reads exactly what it read before the unpublished day"

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
        assert policies == len(DAY_GRAINED), "every day-grained mart keeps its policy after --full-refresh"
        hidden = bi.execute(
            "select count(*) from marts.customer_segments where snapshot_date > %s", (new_day,)
        ).fetchone()[0]
        assert hidden == 0
