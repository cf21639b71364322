"""Relationship-manager row-level security: an RM login reads the names and contacts of its
own customers only (rm.customer_contacts), its own worklist rows (marts.rm_worklist), and
nothing else; BI never reads the rm schema; policies survive ``dbt build --full-refresh``.

Real PostgreSQL, real dbt on the small generated bank (tests/transform), real ``crm rm``.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import errors
from typer.testing import CliRunner

from crm.cli import app
from crm.quality.publish import publish
from crm.rm import revoke_login
from crm.transform import build
from crm.warehouse import role_url
from tests.transform import conftest as bank_fixtures
from tests.transform.bank import DAYS, START

# The built bank of tests/transform: a template built once per session, a copy per test.
built_template = bank_fixtures.built_template
warehouse = bank_fixtures.warehouse

BUILT_DAY = START + dt.timedelta(days=DAYS - 2)
runner = CliRunner()


def _login_url(base: str, role: str, password: str) -> str:
    parts = urlsplit(base)
    netloc = f"{role}:{quote(password, safe='')}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _grant(rm_id: str, role: str, password: str, *, stdin: bool = True):
    args = ["rm", "grant", "--rm-id", rm_id, "--role", role]
    return runner.invoke(app, [*args, "--password-stdin"] if stdin else args, input=password + "\n")


@pytest.fixture
def rms(warehouse, db, monkeypatch):
    """Logins for two RMs (A by stdin, B by CRM_RM_PASSWORD), the built day published (BI and
    RMs see the worklist); dropped afterwards (roles are per server).

    The small bank has one RM: half of that RM's book moves to a second RM in the core
    system's feed (every CDC row of those customers), and the day is rebuilt."""
    (a,) = db.execute("select rm_id from rm.customer_contacts group by rm_id order by count(*) desc limit 1")
    b = db.execute(
        "select 'RM' || lpad((max(substr(rm_id, 3)::int) + 1)::text, 4, '0') from raw.core_customers"
        " where rm_id ~ '^RM[0-9]+$'"
    ).fetchone()[0]
    moved = db.execute(
        "update raw.core_customers set rm_id = %s where customer_id in (select customer_id"
        " from staging.stg_core__customers where rm_id = %s and hashtext(customer_id) %% 2 = 0)",
        (b, a[0]),
    ).rowcount
    assert moved > 0
    build(BUILT_DAY, select="dim_customer customer_360 rm_worklist customer_contacts")
    publish(BUILT_DAY)
    ids = [a[0], b]
    logins, roles = {}, []
    for n, rm_id in enumerate(ids):
        role, password = f"rm_{uuid.uuid4().hex[:12]}", secrets.token_urlsafe(18)
        if n:
            monkeypatch.setenv("CRM_RM_PASSWORD", password)
        result = _grant(rm_id, role, password, stdin=not n)
        assert result.exit_code == 0, result.output
        assert role not in result.output and rm_id not in result.output
        roles.append(role)
        logins[rm_id] = _login_url(warehouse, role, password)
    yield logins
    for role in roles:
        revoke_login(warehouse, role)


def _assert_isolated(db, logins: dict[str, str]) -> None:
    (a, url_a), (b, url_b) = logins.items()
    owner_a = {
        r[0] for r in db.execute("select customer_id from staging.stg_core__customers where rm_id = %s", (a,))
    }
    bi_worklist = "select rm_id, customer_id, snapshot_date from marts.rm_worklist"
    with psycopg.connect(role_url("crm_bi_reader")) as bi:
        bi_rows = set(bi.execute(bi_worklist).fetchall())
    with psycopg.connect(url_a) as conn:
        contacts = conn.execute(
            "select rm_id, customer_id, full_name, mobile, email from rm.customer_contacts"
        )
        contacts = contacts.fetchall()
        worklist = set(conn.execute(bi_worklist).fetchall())
    assert owner_a and {c[1] for c in contacts} == owner_a and len(contacts) == len(owner_a)
    assert {c[0] for c in contacts} == {a}
    assert all(c[2] and "*" not in c[2] for c in contacts), "names in clear, not masked"
    assert sum("@" in (c[4] or "") for c in contacts) > len(contacts) / 2, "e-mails in clear"
    # The worklist: exactly A's rows of what BI sees (its published state), nobody else's.
    assert worklist and worklist == {row for row in bi_rows if row[0] == a}
    assert {row[0] for row in bi_rows} == {a, b}, "BI still reads every RM's worklist"

    with psycopg.connect(url_b) as conn:
        seen_b = {r[0] for r in conn.execute("select customer_id from rm.customer_contacts")}
        worklist_b = conn.execute("select distinct rm_id from marts.rm_worklist").fetchall()
    assert seen_b and not seen_b & owner_a
    assert worklist_b == [(b,)]

    for role in ("crm_bi_reader", "crm_ml"):
        with psycopg.connect(role_url(role)) as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute("select count(*) from rm.customer_contacts")
    owner_published = db.execute(
        "select count(*) from marts.rm_worklist where snapshot_date <= (select dq.published_through())"
    ).fetchone()[0]
    assert len(bi_rows) == owner_published, "BI's visibility of the worklist is unchanged"
    with psycopg.connect(role_url("crm_ml")) as ml:
        ml_rows = ml.execute("select count(*) from marts.rm_worklist").fetchone()[0]
    assert ml_rows == db.execute("select count(*) from marts.rm_worklist").fetchone()[0]


def test_an_rm_reads_only_its_own_customers_and_a_full_refresh_keeps_it(rms, db):
    _assert_isolated(db, rms)
    build(BUILT_DAY, full_refresh=True)
    policies = db.execute(
        "select format('%s.%s', schemaname, tablename) from pg_policies where policyname = 'rm_own_customers'"
    ).fetchall()
    assert sorted(policies) == [("marts.rm_worklist",), ("rm.customer_contacts",)]
    _assert_isolated(db, rms)


FORBIDDEN = [
    "select count(*) from staging.stg_core__customers",
    "select count(*) from raw.core_customers",
    "select count(*) from intermediate.int_customer_scd_attributes",
    "select count(*) from marts.dim_customer",
    "select count(*) from marts.customer_360",
    "select count(*) from security.rm_logins",
    "insert into rm.customer_contacts (rm_id, customer_id) values ('x', 'y')",
    "delete from rm.customer_contacts",
    "update marts.rm_worklist set priority = 0",
    "truncate marts.rm_worklist",
    "create table rm.mine (i int)",
    "create table public.mine (i int)",
    "create table marts.mine (i int)",
    "create function rm.current_rm_id() returns text language sql as 'select 1::text'",
    "update security.rm_logins set rm_id = 'other'",
    "insert into security.rm_logins (role_name, rm_id) values (session_user, 'other')",
    "alter table rm.customer_contacts disable row level security",
    "drop policy rm_own_customers on rm.customer_contacts",
    "set role crm_transformer",
]


def test_an_rm_cannot_read_pii_elsewhere_write_or_change_its_mapping(rms):
    ((a, url_a), _) = rms.items()
    with psycopg.connect(url_a, autocommit=True) as conn:
        refused = []
        for statement in FORBIDDEN:
            try:
                conn.execute(statement)
            except (errors.InsufficientPrivilege, errors.UndefinedTable) as err:
                refused.append(type(err))
        assert refused == [errors.InsufficientPrivilege] * len(FORBIDDEN)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("grant crm_rm to crm_bi_reader")
        # The policies name security.current_rm_id(); the RM cannot even name that schema.
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("select security.current_rm_id()")
        assert conn.execute("select distinct rm_id from rm.customer_contacts").fetchall() == [(a,)]
        limit = conn.execute("select rolconnlimit from pg_roles where rolname = current_user").fetchone()[0]
    assert 0 < limit <= 5, "each RM login has a small connection limit of its own"


def test_grant_refuses_platform_and_foreign_roles_and_weak_passwords(warehouse, db, monkeypatch):
    monkeypatch.delenv("CRM_RM_PASSWORD", raising=False)
    good = secrets.token_urlsafe(18)
    foreign = f"other_{uuid.uuid4().hex[:8]}"
    db.execute(f"create role {foreign} nologin")
    try:
        for role, password in [
            ("crm_bi_reader", good),
            ("crm_owner", good),
            ("pg_monitor", good),
            ("Upper_Case", good),
            (foreign, good),  # an existing role that is not an RM login is never taken over
            (f"rm_{uuid.uuid4().hex[:8]}", "change-me-now"),
            (f"rm_{uuid.uuid4().hex[:8]}", "short"),
        ]:
            result = _grant("RM0001", role, password)
            assert result.exit_code == 2, (role, result.output)
            assert password not in result.output
        no_password = runner.invoke(app, ["rm", "grant", "--rm-id", "RM0001", "--role", "rm_nopass"])
        assert no_password.exit_code == 2 and "CRM_RM_PASSWORD" in no_password.output
        on_command_line = runner.invoke(
            app, ["rm", "grant", "--rm-id", "RM0001", "--role", "rm_x", "--password", good]
        )
        assert on_command_line.exit_code == 2 and "No such option" in on_command_line.output
        member = db.execute("select pg_has_role(%s, 'crm_rm', 'member')", (foreign,)).fetchone()[0]
        assert member is False
        assert db.execute("select count(*) from security.rm_logins").fetchone()[0] == 0
    finally:
        db.execute(f"drop role {foreign}")


def test_regranting_moves_a_login_to_another_rm_and_revoke_drops_it(warehouse, db):
    role, password = f"rm_{uuid.uuid4().hex[:12]}", secrets.token_urlsafe(18)
    (first,) = db.execute("select rm_id from rm.customer_contacts limit 1").fetchone()
    url = _login_url(warehouse, role, password)
    assert "created" in _grant(first, role, password).output
    with psycopg.connect(url) as conn:
        assert conn.execute("select count(*) from rm.customer_contacts").fetchone()[0] > 0
    # Another RM (one without customers yet): the same login now sees none of the first's.
    assert "updated" in _grant(f"{first}-successor", role, password).output
    with psycopg.connect(url) as conn:
        assert conn.execute("select count(*) from rm.customer_contacts").fetchone()[0] == 0
    result = runner.invoke(app, ["rm", "revoke", "--role", role])
    assert result.exit_code == 0 and "dropped" in result.output
    assert db.execute("select count(*) from pg_roles where rolname = %s", (role,)).fetchone()[0] == 0
    assert db.execute("select count(*) from security.rm_logins").fetchone()[0] == 0


def test_migration_0012_downgrades_cleanly_and_upgrades_again(warehouse, db):
    """Down: the rm schema, the mapping, the function and the policies naming it go (cascade),
    crm_rm keeps no privilege here; up again: back, and the next build re-applies the policies."""
    from alembic import command

    from crm.warehouse.migrate import alembic_config, current_revision, migrate

    command.downgrade(alembic_config(warehouse), "0011")
    gone = db.execute(
        "select to_regnamespace('rm'), to_regnamespace('security'),"
        " (select count(*) from pg_policies where policyname = 'rm_own_customers'),"
        " has_schema_privilege('crm_rm', 'marts', 'usage'),"
        # crm_rm's own grant (a database copied from a template has PUBLIC connect again).
        " exists (select from pg_database, aclexplode(datacl) as acl"
        " where datname = current_database() and acl.grantee = 'crm_rm'::regrole)"
    ).fetchone()
    assert gone == (None, None, 0, False, False)
    migrate(warehouse)
    assert current_revision(warehouse) != "0011"
    back = db.execute(
        "select to_regclass('security.rm_logins') is not null, has_schema_privilege('crm_rm', 'rm', 'usage'),"
        " has_schema_privilege('crm_bi_reader', 'rm', 'usage')"
    ).fetchone()
    assert back == (True, True, False)
