"""Keyed pseudonyms and k-anonymity, on real PostgreSQL and dbt (the small generated bank).

dim_customer.national_id_hash is HMAC-SHA256 under a key only the warehouse owner reads
(migration 0013), so neither dbt's role nor BI can recompute it for candidate ids; and the
demographics BI can join per customer are generalised so that each combination is shared by
at least k customers (dbt var k_anonymity_k). Docs: docs/security.md, "Pseudonyms".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import secrets
import time

import psycopg
import pytest

from crm.settings import InsecureSecret, Settings, shannon_bits
from crm.warehouse import role_url
from tests.transform import conftest as bank_fixtures
from tests.transform.bank import DAYS, START

# The built bank of tests/transform: a template built once per session, a copy per test.
built_template = bank_fixtures.built_template
warehouse = bank_fixtures.warehouse

K = 5
# What crm_bi_reader can join per customer that an acquaintance could know: the demographics
# of dim_customer (customer_360 repeats them), branch and RM (customer_segments, rm_worklist).
# Not statuses or behaviour (balances, segments): the bank's own data (docs/security.md).
QUASI_IDENTIFIERS = (
    "d.name_masked, d.mobile_masked, d.gender, d.age_band, d.income_band_cny, d.occupation,"
    " d.years_employed, d.family_role, d.family_size, d.city, d.branch_id, d.onboarding_date, d.rm_id,"
    " c.tenure_days, s.branch_id, s.rm_id, w.rm_id"
)
JOINED = """
from marts.dim_customer as d
left join marts.customer_360 as c
    on c.customer_id = d.customer_id and c.snapshot_date = (select max(snapshot_date) from marts.customer_360)
left join marts.customer_segments as s
    on s.customer_id = d.customer_id and s.snapshot_date = (select max(snapshot_date) from marts.customer_segments)
left join marts.rm_worklist as w on w.customer_id = d.customer_id
"""
SUPPRESSIBLE = (
    "name_masked",
    "mobile_masked",
    "gender",
    "age_band",
    "income_band_cny",
    "occupation",
    "years_employed",
    "family_role",
    "family_size",
    "city",
    "branch_id",
)
# The columns dim_customer showed before (exact onboarding date, detailed occupation).
OLD = """
select gender, case
        when age(%(day)s, birth_date) < interval '25 years' then '18-24'
        when age(%(day)s, birth_date) < interval '35 years' then '25-34'
        when age(%(day)s, birth_date) < interval '45 years' then '35-44'
        when age(%(day)s, birth_date) < interval '55 years' then '45-54'
        when age(%(day)s, birth_date) < interval '65 years' then '55-64' else '65+' end,
    city, occupation, onboarding_date
from staging.stg_core__customers where onboarding_date <= %(day)s
"""


def class_sizes(conn: psycopg.Connection, query: str, params=None) -> list[int]:
    """Size of each equivalence class (rows equal on every selected column) of ``query``."""
    return [r[0] for r in conn.execute(f"select count(*) from ({query}) as q group by q.*", params)]


# -- 1. the pseudonym is an HMAC under a key nobody but the owner reads ------------------
def test_pseudonym_is_hmac_sha256_under_the_stored_key(warehouse, db):
    from crm.settings import get_settings

    day = START + dt.timedelta(days=DAYS - 2)
    key = get_settings().role_password("crm_pii_salt").encode()
    rows = db.execute(
        "select c.national_id, d.national_id_hash from marts.dim_customer d"
        " join raw.core_customers c using (customer_id) where d.snapshot_date = %s",
        (day,),
    ).fetchall()
    assert len(rows) > 100
    wrong = [h for n, h in rows if h != hmac.new(key, n.encode(), hashlib.sha256).hexdigest()]
    assert not wrong, f"{len(wrong)} of {len(rows)} pseudonyms are not HMAC-SHA256(key, national id)"
    assert not [h for n, h in rows if h == hashlib.sha256(key + n.encode()).hexdigest()], "old salted hash"
    # RFC 2104 edge cases: a key longer than the 64-byte block is hashed first; UTF-8 text.
    for long_key in (secrets.token_urlsafe(64), "密钥" * 20 + secrets.token_hex(8)):
        db.execute("update private.pii_salt set salt = %s", (long_key,))
        got = db.execute("select private.pseudonym(%s)", ("身份证-123",)).fetchone()[0]
        assert got == hmac.new(long_key.encode(), "身份证-123".encode(), hashlib.sha256).hexdigest()


def test_transformer_and_bi_cannot_read_the_key_or_a_function_returning_it(warehouse, db):
    key = db.execute("select salt from private.pii_salt").fetchone()[0]
    for role in ("crm_transformer", "crm_bi_reader"):
        with psycopg.connect(role_url(role), autocommit=True) as conn:
            for query in (
                "select salt from private.pii_salt",
                "select hmac_inner, hmac_outer from private.pii_salt",
                "select private.xor_block('\\x00'::bytea, 0)",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(query)
            # The old salt getter is gone (BI cannot even look into the schema).
            gone = psycopg.errors.UndefinedFunction
            with pytest.raises(
                gone if role == "crm_transformer" else (gone, psycopg.errors.InsufficientPrivilege)
            ):
                conn.execute("select private.pii_salt()")
            # Every function of the private schema the role may execute: the pseudonym at most.
            callable_ = {
                r[0]
                for r in conn.execute(
                    "select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
                    " where n.nspname = 'private' and has_function_privilege(p.oid, 'execute')"
                    " and has_schema_privilege(n.oid, 'usage')"
                )
            }
            assert callable_ == ({"pseudonym"} if role == "crm_transformer" else set()), role
            if role == "crm_transformer":
                pseudonym = conn.execute("select private.pseudonym('x')").fetchone()[0]
                assert len(pseudonym) == 64 and key not in pseudonym
                with pytest.raises(psycopg.errors.InsufficientPrivilege):  # not the owner
                    conn.execute("alter function private.pseudonym(text) security invoker")
            else:  # BI could hash candidate ids and match them against national_id_hash
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("select private.pseudonym('x')")


def test_cost_of_the_pseudonym_on_100000_ids(warehouse, db):
    """Reported, not a benchmark gate: a security definer SQL function is not inlined."""
    timings = {}
    for name, expr in (
        ("hmac", "private.pseudonym('id-' || i)"),
        ("sha256", "encode(sha256(convert_to('id-' || i, 'UTF8')), 'hex')"),
    ):
        started = time.perf_counter()
        distinct = db.execute(
            f"select count(distinct {expr}) from generate_series(1, 100000) as i"
        ).fetchone()[0]
        timings[name] = time.perf_counter() - started
        assert distinct == 100000
    print(f"\n100,000 ids: HMAC {timings['hmac']:.2f} s, plain sha256 {timings['sha256']:.2f} s")
    assert timings["hmac"] < 30


# -- 2. weak keys are refused, naming the variable, never the value --------------------------
WEAK = [
    "change-me",
    "change-me-change-me-change-me-change-me",  # placeholder, long enough
    "x7Hq2-pLw9_vR4tZk8mB",  # random but 20 characters
    "abcabcabcabcabcabcabcabcabcabcabcabc",  # 3 distinct characters
    "a" * 40 + "bcdefghijkl",  # 12 distinct, but ~1.6 bits per character
]


@pytest.mark.parametrize("key", WEAK)
def test_a_weak_or_placeholder_key_is_refused_naming_the_variable(tmp_path, monkeypatch, key):
    from crm.warehouse.migrate import sync_secrets

    monkeypatch.setenv("CRM_PII_SALT", key)
    settings = Settings(home=tmp_path)
    with pytest.raises(InsecureSecret) as err:
        settings.role_password("crm_pii_salt")
    assert "CRM_PII_SALT" in str(err.value) and key not in str(err.value)
    with pytest.raises(InsecureSecret):  # before any connection is attempted
        sync_secrets("postgresql://nobody@127.0.0.1:1/none", settings)


def test_a_random_key_is_accepted_and_a_short_generated_one_replaced(tmp_path, monkeypatch):
    import json

    strong = secrets.token_urlsafe(32)
    assert shannon_bits(strong) > 4 and math.isclose(shannon_bits("ab" * 20), 1.0)
    monkeypatch.setenv("CRM_PII_SALT", strong)
    assert Settings(home=tmp_path).role_password("crm_pii_salt") == strong
    monkeypatch.delenv("CRM_PII_SALT")
    (tmp_path / "secrets.json").write_text(json.dumps({"crm_pii_salt": secrets.token_urlsafe(18)}))
    generated = Settings(home=tmp_path).role_password("crm_pii_salt")
    assert (
        len(generated) >= 32
        and json.loads((tmp_path / "secrets.json").read_text())["crm_pii_salt"] == generated
    )


# -- 3. k-anonymity of what BI can join -------------------------------------------------------
def test_every_combination_bi_can_join_is_shared_by_k_customers(warehouse, db):
    from crm.quality.publish import publish

    day = START + dt.timedelta(days=DAYS - 2)
    publish(day)
    with psycopg.connect(role_url("crm_bi_reader")) as bi:
        sizes = class_sizes(bi, f"select {QUASI_IDENTIFIERS} {JOINED}")
        customers = bi.execute("select count(*) from marts.dim_customer").fetchone()[0]
    assert customers > 300 and sum(sizes) == customers, "BI sees the published customers"
    print(f"\nBI joinable classes: {len(sizes)} over {customers} customers, smallest {min(sizes)}")
    assert min(sizes) >= K, f"{sum(s for s in sizes if s < K)} customers in classes smaller than {K}"
    # What it costs: the share of customers whose value was suppressed (null), per column.
    lost = db.execute(
        "select "
        + ", ".join(f"round(avg(({c} is null)::int), 2)" for c in SUPPRESSIBLE)
        + " from marts.dim_customer where snapshot_date = %s",
        (day,),
    ).fetchone()
    print("suppressed: " + ", ".join(f"{c} {share}" for c, share in zip(SUPPRESSIBLE, lost, strict=True)))
    # The columns BI saw before singled out most customers.
    old = class_sizes(db, OLD, {"day": day})
    unique = sum(1 for s in old if s == 1)
    print(f"old columns: {unique} of {sum(old)} customers unique")
    assert unique > sum(old) / 2, "the old combination was unique for most customers"
    assert min(old) < K
    # The old mobile mask (first 3 and last 4 digits) alone singled out most customers too.
    old_mobile = class_sizes(
        db, "select left(mobile, 3) || right(mobile, 4) from staging.stg_core__customers"
    )
    print(f"old mobile mask: {sum(1 for s in old_mobile if s == 1)} of {sum(old_mobile)} unique")
    assert sum(1 for s in old_mobile if s == 1) > sum(old_mobile) / 2


def test_migration_0013_downgrades_and_upgrades_again(warehouse, db):
    """Down: the pseudonym function, pads and trigger go, the salt getter is back for dbt; up
    again: the key is owner-only and the pseudonym is the HMAC again."""
    from alembic import command

    from crm.settings import get_settings
    from crm.warehouse.migrate import alembic_config, migrate

    key = get_settings().role_password("crm_pii_salt")
    command.downgrade(alembic_config(warehouse), "0012")
    down = db.execute(
        "select to_regprocedure('private.pseudonym(text)'), has_table_privilege('crm_transformer',"
        " 'private.pii_salt', 'select'), has_function_privilege('crm_transformer', 'private.pii_salt()', 'execute')"
    ).fetchone()
    assert down == (None, True, True)
    migrate(warehouse)
    up = db.execute(
        "select has_table_privilege('crm_transformer', 'private.pii_salt', 'select'),"
        " to_regprocedure('private.pii_salt()'), private.pseudonym('abc')"
    ).fetchone()
    assert up == (False, None, hmac.new(key.encode(), b"abc", hashlib.sha256).hexdigest())
