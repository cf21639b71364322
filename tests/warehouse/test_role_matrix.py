"""The role matrix of docs/security.md ("Roles and what each can do"), proved on a real warehouse.

The table is parsed from the document, so the document and this test cannot drift. On a
migrated warehouse where dbt built the small generated bank (tests/transform) and one day is
published, each role: its catalog privileges per schema are exactly the documented cells and
exceptions; it logs in with its own password and tries a read, a write, a create and an
execute per schema (allowed or ``InsufficientPrivilege``, as documented); no stage role is a
superuser or owns what another stage executes; and BI finds no clear national id, name,
phone, e-mail or address in any column of anything it can read.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import secrets
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import errors, sql

from crm.quality.publish import publish
from crm.rm import grant_login, revoke_login
from crm.warehouse import role_url
from tests.transform import conftest as bank_fixtures
from tests.transform.bank import DAYS, START

# The built bank of tests/transform: a template built once per session, a copy per test.
built_template = bank_fixtures.built_template
warehouse = bank_fixtures.warehouse

DOC = Path(__file__).parents[2] / "docs" / "security.md"
SECTION = "## Roles and what each can do"
BUILT = START + dt.timedelta(days=DAYS - 2)  # the bank is built (and here published) through this day
STAGES = ("crm_loader", "crm_transformer", "crm_ml")
LETTERS = "rwcxo"
RELATIONS = "('r', 'p', 'v', 'm', 'f')"
TABLES = ("r", "p")
RELKINDS = ("r", "p", "v", "m", "f")


# -- the document ----------------------------------------------------------------------
def parse_matrix(
    text: str,
) -> tuple[list[str], dict[str, dict[str, str]], dict[tuple[str, str, str], list[str]]]:
    """(schemas, {role: {schema: cell}}, {(role, schema, letter): object globs}) of the section."""
    body = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in body.splitlines() if line.startswith("|")]
    header = [c.strip(" `") for c in rows[0].strip("|").split("|")]
    schemas, cells = header[1:], {}
    for line in rows[2:]:
        first, *rest = [c.strip() for c in line.strip("|").split("|")]
        role = re.search(r"`([\w]+)`", first).group(1)
        role = {"PUBLIC": "public"}.get(role, role)
        cells[role] = dict(zip(schemas, (c.strip("` ") for c in rest), strict=True))
    exceptions = {}
    for m in re.finditer(r"^- `(\w+)` `(\w+)` `([rwxo])\*`: (.*)$", body, re.M):
        role = {"PUBLIC": "public"}.get(m[1], m[1])
        exceptions[(role, m[2], m[3])] = re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", m[4]))
    return schemas, cells, exceptions


SCHEMAS, CELLS, EXCEPTIONS = parse_matrix(DOC.read_text(encoding="utf-8"))


def test_the_document_has_one_row_per_role_and_one_column_per_schema():
    assert list(CELLS) == ["crm_owner", *STAGES, "crm_bi_reader", "crm_rm", "public"]
    assert SCHEMAS == [
        "raw",
        "quarantine",
        "load_work",
        "audit",
        "staging",
        "intermediate",
        "snapshots",
        "marts",
        "ml",
        "dq",
        "rm",
        "security",
        "private",
        "public",
    ]
    for role, row in CELLS.items():
        for schema, cell in row.items():
            assert re.fullmatch(r"-|u|(?:[rwcxo]\*?)+", cell), (
                f"{DOC.name}: {role} / {schema}: bad cell {cell!r}"
            )
    for role, schema, letter in EXCEPTIONS:
        assert f"{letter}*" in CELLS[role][schema], (
            f"{DOC.name}: exception {role} {schema} {letter} not in the table"
        )


# -- the warehouse -----------------------------------------------------------------------
def _login_url(base: str, role: str, password: str) -> str:
    parts = urlsplit(base)
    netloc = f"{role}:{quote(password, safe='')}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.fixture
def logins(warehouse, db):
    """{matrix row: (role name in the catalog, login URL)}: the stage roles with their own
    passwords, an RM login (``crm rm grant``'s function) and a login granted nothing but
    CONNECT (what PUBLIC may do); one day published for BI."""
    publish(BUILT)
    rm_id = db.execute(
        "select rm_id from rm.customer_contacts group by 1 order by count(*) desc limit 1"
    ).fetchone()[0]
    rm_role, rm_password = f"rm_{uuid.uuid4().hex[:12]}", secrets.token_urlsafe(18)
    grant_login(warehouse, rm_role, rm_id, rm_password)
    probe, probe_password = f"probe_{uuid.uuid4().hex[:12]}", secrets.token_urlsafe(18)
    db.execute(
        sql.SQL("create role {} login password {}").format(sql.Identifier(probe), sql.Literal(probe_password))
    )
    db.execute(
        sql.SQL("grant connect on database {} to {}").format(
            sql.Identifier(db.info.dbname), sql.Identifier(probe)
        )
    )
    urls = {"crm_owner": ("crm_owner", warehouse)}
    urls |= {r: (r, role_url(r)) for r in (*STAGES, "crm_bi_reader")}
    urls["crm_rm"] = (rm_role, _login_url(warehouse, rm_role, rm_password))
    urls["public"] = ("public", _login_url(warehouse, probe, probe_password))
    yield urls
    revoke_login(warehouse, rm_role)
    db.execute(
        sql.SQL("revoke connect on database {} from {}").format(
            sql.Identifier(db.info.dbname), sql.Identifier(probe)
        )
    )
    db.execute(sql.SQL("drop role {}").format(sql.Identifier(probe)))


def catalog_matrix(db, role: str) -> tuple[dict[str, str], dict[tuple[str, str], set[str]]]:
    """What ``role`` holds per schema, in the document's letters, and who holds a letter partly."""
    cells, partial = {}, {}
    for schema in SCHEMAS:
        usage, create = db.execute(
            "select has_schema_privilege(%(r)s, %(s)s, 'usage'), has_schema_privilege(%(r)s, %(s)s, 'create')",
            {"r": role, "s": schema},
        ).fetchone()
        objects = db.execute(
            f"""select c.relname, c.relkind::text,
                has_any_column_privilege(%(r)s, c.oid, 'select'),
                c.relkind in ('r', 'p') and (has_any_column_privilege(%(r)s, c.oid, 'insert')
                  or has_any_column_privilege(%(r)s, c.oid, 'update')
                  or has_table_privilege(%(r)s, c.oid, 'delete') or has_table_privilege(%(r)s, c.oid, 'truncate')),
                false, c.relowner = coalesce(to_regrole(%(r)s), 0)
            from pg_class c where c.relnamespace = %(s)s::regnamespace and c.relkind in {RELATIONS}
            union all
            select p.proname, 'function', false, false, has_function_privilege(%(r)s, p.oid, 'execute'),
                p.proowner = coalesce(to_regrole(%(r)s), 0)
            from pg_proc p where p.pronamespace = %(s)s::regnamespace""",
            {"r": role, "s": schema},
        ).fetchall()
        letters = "c" if create else ""
        for letter, index, kinds in (
            ("r", 2, RELKINDS),
            ("w", 3, TABLES),
            ("x", 4, ("function",)),
            ("o", 5, None),
        ):
            pool = {o[0] for o in objects if kinds is None or o[1] in kinds}
            held = {o[0] for o in objects if o[index]} if usage or letter == "o" else set()
            if held and held == pool:
                letters += letter
            elif held:
                letters += letter + "*"
                partial[(schema, letter)] = held
        letters = "".join(sorted(re.findall(r"[rwcxo]\*?", letters), key=lambda t: LETTERS.index(t[0])))
        cells[schema] = letters or ("u" if usage else "-")
    return cells, partial


@pytest.mark.parametrize("row", list(CELLS))
def test_catalog_privileges_are_exactly_the_documented_cells(logins, db, row):
    """has_schema_privilege, has_any_column_privilege, has_table_privilege,
    has_function_privilege and ownership of every relation and function, per schema."""
    role = logins[row][0]
    cells, partial = catalog_matrix(db, role)
    print(row, " | ".join(cells[s] for s in SCHEMAS))  # the row as the document would write it
    wrong = [
        f"{schema}: documented {CELLS[row][schema]!r}, catalog {cells[schema]!r}"
        for schema in SCHEMAS
        if cells[schema] != CELLS[row][schema]
    ]
    assert not wrong, f"{DOC.name}, {SECTION!r}, row {row}: " + "; ".join(wrong)
    for (schema, letter), held in partial.items():
        globs = EXCEPTIONS.get((row, schema, letter), [])
        unlisted = sorted(o for o in held if not any(fnmatch.fnmatchcase(o, g) for g in globs))
        unheld = [g for g in globs if not fnmatch.filter(held, g)]
        assert not unlisted and not unheld, (
            f"{DOC.name}: {row} {schema} {letter}*: held but not listed {unlisted}, listed but not held {unheld}"
        )


# -- logging in and trying ----------------------------------------------------------------
def _attempt(conn: psycopg.Connection, statement: str) -> bool:
    """True if the statement passed the privilege checks (it is rolled back either way)."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(statement)
    except errors.InsufficientPrivilege as err:
        # PostgreSQL's own refusal, not a function refusing its argument with the same code.
        return not (err.diag.message_primary or "").startswith("permission denied")
    except psycopg.Error:  # past the privilege checks (e.g. a function refusing a null argument)
        return True
    return True


def _statements(db, schema: str, letter: str, name: str) -> list[str]:
    """Statements exercising ``letter`` on object ``name`` of ``schema`` (any one passing = allowed)."""
    rel = sql.Identifier(schema, name).as_string(db)
    if letter == "r":
        return [f"select 1 from {rel} limit 1"]
    if letter == "c":
        return [f"create table {sql.Identifier(schema, 'role_matrix_probe').as_string(db)} (x int)"]
    if letter == "x":
        proc, args = db.execute(
            "select p.oid::regproc::text, array(select format_type(t, null) from unnest(p.proargtypes) t)"
            " from pg_proc p where p.pronamespace = %s::regnamespace and p.proname = %s",
            (schema, name),
        ).fetchone()
        # Scalar subqueries, not constants: a strict function of a null constant is folded to
        # null by the planner, before any privilege check.
        return [f"select {proc}({', '.join(f'(select null::{a})' for a in args)})"]
    column = db.execute(
        "select quote_ident(attname) from pg_attribute where attrelid = %s::regclass and attnum > 0"
        " and not attisdropped and attgenerated = '' and attidentity <> 'a' order by attnum",
        (rel,),
    ).fetchall()
    # Updates: each column the role may update is tried by the caller's "any one passing".
    return (
        [f"insert into {rel} ({c}) select null where false" for (c,) in column[:1]]
        + [f"update {rel} set {c} = null where false" for (c,) in column]
        + [f"delete from {rel} where false"]
    )


def _representatives(db, role: str, schema: str, letter: str, cell: str) -> list[tuple[str, bool]]:
    """(object, expected allowed) to try for one letter of one cell: one the role holds, one it
    does not (a partial letter), or one of the schema's (a letter it lacks)."""
    if letter == "c":
        return [("", letter in cell)]
    kinds = {"r": RELATIONS, "w": "('r', 'p')"}.get(letter)
    names = [
        r[0]
        for r in db.execute(
            f"select relname from pg_class where relnamespace = %s::regnamespace and relkind in {kinds} order by 1"
            if kinds
            else "select proname from pg_proc where pronamespace = %s::regnamespace"
            " and prorettype <> 'trigger'::regtype order by 1",
            (schema,),
        )
    ]
    if not names:
        return []
    if f"{letter}*" in cell:
        globs = EXCEPTIONS[(role, schema, letter)]
        listed = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in globs)]
        other = [n for n in names if n not in listed]
        return [(listed[0], True)] + ([(other[0], False)] if other else [])
    return [(names[0], letter in cell)]


@pytest.mark.parametrize("row", list(CELLS))
def test_each_role_logs_in_and_can_do_exactly_what_the_matrix_says(logins, db, row):
    """Per schema: a read, a write, a create, an execute, each allowed or refused with
    InsufficientPrivilege as its cell says (every attempt is rolled back)."""
    _, url = logins[row]
    wrong = []
    with psycopg.connect(url) as conn:
        for schema in SCHEMAS:
            cell = CELLS[row][schema]
            for letter in "rwcx":
                for name, allowed in _representatives(db, row, schema, letter, cell):
                    got = any(_attempt(conn, s) for s in _statements(db, schema, letter, name))
                    if got != allowed:
                        wrong.append(
                            f"{letter} on {schema}.{name or '(schema)'}: {'allowed' if got else 'refused'}"
                        )
    assert not wrong, f"{DOC.name}, row {row}: " + "; ".join(wrong)


def test_bi_reads_only_published_days_and_an_rm_only_its_own_customers(logins, db):
    assert db.execute("select max(snapshot_date) from marts.customer_360").fetchone() == (BUILT,)
    with psycopg.connect(logins["crm_bi_reader"][1], autocommit=True) as bi:
        assert bi.execute("select max(snapshot_date) from marts.customer_360").fetchone() == (BUILT,)
        assert bi.execute("select distinct snapshot_date from marts.dim_customer").fetchall() == [(BUILT,)]
        assert bi.execute("select count(*) from marts.ml_churn_labels").fetchone() == (0,)
        assert db.execute("select count(*) from marts.ml_churn_labels").fetchone()[0] > 0
        db.execute("update dq.published_days set business_date = business_date - 1")  # the day withheld
        for mart, day in (
            ("customer_360", "snapshot_date"),
            ("rm_worklist", "snapshot_date"),
            ("fct_daily_balances", "business_date"),
        ):
            query = f"select count(*) from marts.{mart} where {day} >= %s"
            assert bi.execute(query, (BUILT,)).fetchone() == (0,), mart
            assert db.execute(query, (BUILT,)).fetchone()[0] > 0, mart
        db.execute("update dq.published_days set business_date = business_date + 1")
    rm_role, rm_url = logins["crm_rm"]
    (rm_id,) = db.execute("select rm_id from security.rm_logins where role_name = %s", (rm_role,)).fetchone()
    with psycopg.connect(rm_url) as rm:
        seen = rm.execute("select array_agg(distinct rm_id), count(*) from rm.customer_contacts").fetchone()
    assert seen[0] == [rm_id] and seen[1] > 0


# -- attributes and ownership ------------------------------------------------------------
def test_no_stage_role_is_superuser_and_none_owns_what_another_stage_executes(logins, db):
    rm_role = logins["crm_rm"][0]
    attributes = {
        r[0]: r[1:]
        for r in db.execute(
            "select rolname, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication, rolcanlogin"
            " from pg_roles where rolname = any(%s)",
            (["crm_owner", *STAGES, "crm_bi_reader", "crm_rm", rm_role],),
        )
    }
    assert attributes.pop("crm_owner") == (False, False, True, True, False, True)
    assert attributes.pop("crm_rm") == (False,) * 6
    assert attributes == dict.fromkeys([*STAGES, "crm_bi_reader", rm_role], (False,) * 5 + (True,))
    member_of = db.execute(
        "select r.rolname, g.rolname from pg_auth_members m join pg_roles r on r.oid = m.member"
        " join pg_roles g on g.oid = m.roleid where r.rolname = any(%s)",
        ([*STAGES, "crm_bi_reader", rm_role],),
    ).fetchall()
    assert member_of == [(rm_role, "crm_rm")]
    owned = db.execute(
        """select pg_get_userbyid(c.relowner), n.nspname, c.relname from pg_class c
            join pg_namespace n on n.oid = c.relnamespace where c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
            and n.nspname = any(%(s)s)
        union all select pg_get_userbyid(p.proowner), n.nspname, p.proname || '()' from pg_proc p
            join pg_namespace n on n.oid = p.pronamespace where n.nspname = any(%(s)s)
        union all select pg_get_userbyid(nspowner), nspname, '' from pg_namespace where nspname = any(%(s)s)""",
        {"s": SCHEMAS},
    ).fetchall()
    dbt_schemas = {"staging", "intermediate", "snapshots", "marts", "rm"}
    wrong = [
        f"{schema}.{name or '(schema)'} owned by {owner}"
        for owner, schema, name in owned
        if not (
            (owner == "crm_transformer" and schema in dbt_schemas and name and not name.endswith("()"))
            or owner in ("crm_owner", "pg_database_owner")
        )
    ]
    # What the transformer reads or runs (raw, audit, ml, dq, security, private and every
    # function) is the owner's; the loader, ML, BI and RM logins own nothing.
    assert not wrong
    assert any(o == "crm_transformer" for o, *_ in owned)


def test_the_transformer_cannot_run_code_as_ml_through_the_marts_ml_reads(warehouse, db):
    """ML's features and scores read marts dbt (crm_transformer) owns. An owner may add a row
    policy calling its own function, which would then run as whoever reads: crm_ml, which may
    rewrite scores and the model registry the transformer may only read. The warehouse's
    event trigger (crm.warehouse.code_guard) refuses the function itself."""
    refused = pytest.raises(psycopg.errors.InsufficientPrivilege, match="only crm_owner creates code")
    with psycopg.connect(role_url("crm_transformer"), autocommit=True) as dbt, refused:
        dbt.execute(
            "create function marts.role_matrix_probe() returns boolean language plpgsql as $$"
            " begin if current_user = 'crm_ml' then raise exception 'transformer code ran as %', current_user;"
            " end if; return true; end $$"
        )
    assert not db.execute("select 1 from pg_proc where proname = 'role_matrix_probe'").fetchall()


@pytest.mark.parametrize(
    ("role", "schema"),
    [("crm_transformer", "marts"), ("crm_transformer", "staging"), ("crm_loader", "load_work")],
)
@pytest.mark.parametrize(
    "statement",
    [
        "create function {s}.probe() returns int language sql as 'select 1'",
        "create procedure {s}.probe() language sql as 'select 1'",
    ],
)
def test_no_stage_role_creates_code_where_it_may_create_tables(warehouse, role, schema, statement):
    """CREATE on a schema covers functions too; the event trigger keeps code the owner's."""
    with psycopg.connect(role_url(role), autocommit=True) as conn:
        conn.execute(sql.SQL("create table {}.code_guard_probe (x int)").format(sql.Identifier(schema)))
        try:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only crm_owner creates code"):
                conn.execute(statement.format(s=schema))
        finally:
            conn.execute(sql.SQL("drop table {}.code_guard_probe").format(sql.Identifier(schema)))


def test_the_owner_still_creates_code(warehouse, db):
    db.execute("create function public.code_guard_owner_probe() returns int language sql as 'select 1'")
    assert db.execute("select public.code_guard_owner_probe()").fetchone()[0] == 1
    db.execute("drop function public.code_guard_owner_probe()")


# -- BI and clear personal data -----------------------------------------------------------
PATTERNS = {
    "national id": re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9X](?![0-9A-Za-z])"),
    "mobile": re.compile(r"(?<![0-9A-Za-z])1[3-9][0-9]{9}(?![0-9A-Za-z])"),
    "e-mail": re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"),
}
PII = ("national_id", "full_name", "mobile", "email", "address")


def test_bi_reads_no_clear_national_id_name_phone_email_or_address(logins, db):
    """Every column of every relation BI can select, read as BI: no value matches the
    patterns of a national id, mobile or e-mail, or contains a real one of the bank's
    customers (their ids, names, mobiles, e-mails and addresses, read from raw as owner)."""
    real = {
        field: {
            v for (v,) in db.execute(f"select distinct {field} from raw.core_customers where {field} <> ''")
        }
        for field in PII
    }
    assert all(len(values) > 100 for values in real.values()), {k: len(v) for k, v in real.items()}
    readable = db.execute(
        f"""select n.nspname, c.relname, a.attname from pg_class c
        join pg_namespace n on n.oid = c.relnamespace join pg_attribute a on a.attrelid = c.oid
        where c.relkind in {RELATIONS} and a.attnum > 0 and not a.attisdropped
          and has_schema_privilege('crm_bi_reader', n.oid, 'usage')
          and has_column_privilege('crm_bi_reader', c.oid, a.attnum, 'select') order by 1, 2, a.attnum"""
    ).fetchall()
    assert len({(s, r) for s, r, _ in readable}) >= 15
    found, values_read = [], 0
    with psycopg.connect(logins["crm_bi_reader"][1]) as bi:
        assert bi.execute("select count(*) from marts.dim_customer").fetchone()[0] > 100
        for schema, rel, column in readable:
            ident = sql.SQL("select distinct {}::text from {} where {} is not null").format(
                sql.Identifier(column), sql.Identifier(schema, rel), sql.Identifier(column)
            )
            values = [v for (v,) in bi.execute(ident)]
            values_read += len(values)
            for value in values:
                kinds = [k for k, p in PATTERNS.items() if p.search(value)]
                kinds += [f for f, vs in real.items() if value in vs or any(v in value for v in vs)]
                if kinds:  # never the value itself: it may be personal data
                    found.append(f"{schema}.{rel}.{column}: {', '.join(sorted(set(kinds)))}")
    print(f"\nBI: {len(readable)} columns, {values_read} distinct values scanned")
    assert values_read > 10_000
    assert not sorted(set(found))
