"""The loader owns nothing the transformer executes (migration 0014).

A security review found that ``crm_loader`` owned the raw tables: it could replace one with
a view calling its own function, which the next ``dbt build`` ran as ``crm_transformer``,
drop the transformer's views with CASCADE and rewrite ``audit.load_log``. These tests run
as the loader on a real warehouse, after real loads by both load paths, and check each of
those doors is shut while loading still works.
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from alembic import command
from psycopg import errors

from crm.feeds import load_registry
from crm.ingest import load_file
from crm.warehouse import bootstrap, role_url
from crm.warehouse.migrate import alembic_config
from tests.ingest.test_loader import customer_row, write_csv

REG = load_registry()
CUSTOMERS = REG.feed("core_customers")
DAY = dt.date(2026, 1, 5)


def _customers_file(tmp_path, n: int = 3):
    """A clean core_customers file of ``n`` rows (the clean path loads it)."""
    return write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, [customer_row(i) for i in range(1, n + 1)])


@pytest.fixture
def loaded(warehouse, tmp_path):
    """A warehouse where the loader has loaded one day by each path."""
    path = _customers_file(tmp_path)
    with psycopg.connect(role_url("crm_loader")) as conn:
        load_file(conn, CUSTOMERS, DAY, path)
        load_file(conn, CUSTOMERS, DAY + dt.timedelta(days=1), path, clean_copy=False)
    return warehouse


@pytest.fixture
def loader(loaded):
    with psycopg.connect(role_url("crm_loader"), autocommit=True) as conn:
        yield conn


def _loader_owned(db) -> list[str]:
    return [
        r[0]
        for r in db.execute(
            "select c.oid::regclass::text from pg_class c where c.relowner = 'crm_loader'::regrole"
            " union all select n.nspname from pg_namespace n where n.nspowner = 'crm_loader'::regrole"
            " union all select p.oid::regprocedure::text from pg_proc p where p.proowner = 'crm_loader'::regrole"
        ).fetchall()
    ]


def test_after_loads_by_both_paths_the_loader_owns_nothing(loaded, db):
    """Raw tables, their day partitions (the clean path's adopted one and the row path's
    created one), quarantine and audit tables: all the owner's; the data is there."""
    assert _loader_owned(db) == []
    owners = dict(
        db.execute(
            "select c.relname, pg_get_userbyid(c.relowner) from pg_class c"
            " where c.relnamespace = 'raw'::regnamespace and c.relname like 'core_customers%'"
            " and c.relkind in ('r', 'p')"
        ).fetchall()
    )
    assert owners == dict.fromkeys(
        ["core_customers", "core_customers_p20260105", "core_customers_p20260106"], "crm_owner"
    )
    assert db.execute("select count(*) from raw.core_customers").fetchone() == (6,)
    assert db.execute(
        "select count(*) from pg_class where relnamespace = 'load_work'::regnamespace"
    ).fetchone() == (0,)


@pytest.mark.parametrize(
    "statement",
    [
        "create view raw.core_accounts_v as select 1 as x",
        "create view staging.stg_evil as select 1 as x",
        "create view audit.v as select 1 as x",
        "create view quarantine.v as select 1 as x",
        "create view public.v as select 1 as x",
        "create function raw.f() returns int language sql as 'select 1'",
        "create function staging.f() returns int language sql as 'select 1'",
        "create function audit.f() returns int language sql as 'select 1'",
        "create table raw.t (x int)",
        "drop table raw.core_customers",
        "drop table raw.core_customers cascade",
        "drop table raw.core_customers_p20260105",
        "alter table raw.core_customers rename to core_customers_old",
        "alter table raw.core_customers_p20260105 rename to x",
        "alter table raw.core_customers detach partition raw.core_customers_p20260105",
        "create trigger t before insert on raw.core_customers for each row execute function"
        " suppress_redundant_updates_trigger()",
        "drop view staging.stg_probe cascade",
        "delete from audit.load_log",
        "truncate audit.load_log",
        "delete from audit.reprocess_requests",
        "alter table audit.load_log disable row level security",
        "update audit.load_log set feed = 'x'",
        "truncate raw.core_customers",
        "drop table quarantine.core_customers",
    ],
)
def test_the_loader_cannot_create_code_or_replace_what_others_read(loaded, db, statement):
    """Each statement would let the loader plant code the transformer runs, or destroy
    what others built or recorded: all refused for lack of privilege."""
    with psycopg.connect(role_url("crm_transformer"), autocommit=True) as dbt:
        dbt.execute("create view staging.stg_probe as select customer_id from raw.core_customers")
    with (
        psycopg.connect(role_url("crm_loader"), autocommit=True) as loader,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        loader.execute(statement)
    assert db.execute("select to_regclass('staging.stg_probe')").fetchone()[0] is not None
    assert db.execute("select count(*) from audit.load_log").fetchone()[0] == 2
    assert db.execute("select count(*) from raw.core_customers").fetchone() == (6,)


def test_the_loader_only_closes_open_attempts_in_the_ledger(loader, db):
    """Insert a running attempt and close it: allowed. Rewrite a closed attempt, insert one
    already 'loaded', or change who/what it was: the row policy or column grants refuse."""
    load_id = loader.execute(
        "insert into audit.load_log (feed, business_date, file_path, status)"
        " values ('core_customers', '2026-01-07', 'f', 'running') returning load_id"
    ).fetchone()[0]
    loader.execute(
        "update audit.load_log set status = 'loaded', rows_in_file = 0, rows_loaded = 0,"
        " rows_quarantined = 0 where load_id = %s",
        (load_id,),
    )
    superseded = loader.execute(
        "update audit.load_log set status = 'superseded' where load_id = %s", (load_id,)
    ).rowcount
    assert superseded == 1
    # A superseded attempt is history: the policy hides it from the loader's updates.
    assert (
        loader.execute("update audit.load_log set status = 'loaded' where load_id = %s", (load_id,)).rowcount
        == 0
    )
    with pytest.raises(errors.InsufficientPrivilege):
        loader.execute(
            "insert into audit.load_log (feed, business_date, file_path, status, rows_in_file, rows_loaded,"
            " rows_quarantined) values ('core_customers', '2026-01-08', 'f', 'loaded', 0, 0, 0)"
        )
    with pytest.raises(errors.InsufficientPrivilege):
        loader.execute("update audit.load_log set file_sha256 = 'x' where load_id = %s", (load_id,))
    assert db.execute("select status from audit.load_log where load_id = %s", (load_id,)).fetchone() == (
        "superseded",
    )


@pytest.mark.parametrize(
    "call",
    [
        "select raw.ensure_partition('load_log', '2026-01-05')",
        "select raw.ensure_partition('core_customers\"; drop table raw.core_accounts; --', '2026-01-05')",
        "select raw.ensure_partition('core_customers_p20260105', '2026-01-05')",
        "select raw.add_feed_columns('core_customers', array['x'], array['int; drop table raw.core_accounts'])",
        "select raw.add_feed_columns('core_customers', array['x'], array['not_a_type'])",
        "select raw.analyze_partition('core_customers', '2030-01-01', array['customer_id'])",
        "select raw.adopt_partition('core_customers', '2026-01-05', 1)",
        "select raw.registered_feed('core_customers')",
        "select raw._grant_partition('core_customers_p20260105')",
    ],
)
def test_the_owners_functions_take_only_registered_feeds_and_plain_arguments(loader, db, call):
    """Anything but a registered feed, a type name, an existing day or a running load is
    refused (and the helpers are not the loader's to call); nothing was dropped."""
    with pytest.raises((errors.InsufficientPrivilege, errors.InvalidParameterValue, errors.UndefinedTable)):
        loader.execute(call)
    assert db.execute("select to_regclass('raw.core_accounts')").fetchone()[0] is not None
    assert db.execute(
        "select count(*) from pg_attribute where attrelid = 'raw.core_customers'::regclass and attname = 'x'"
    ).fetchone() == (0,)


@pytest.mark.parametrize(
    "plant",
    [
        (
            "create function load_work.f(text) returns text language sql immutable as 'select $1'",
            "create statistics load_work.s on (load_work.f(customer_id)), customer_id from {work}",
        ),
        (
            "create function load_work.g() returns trigger language plpgsql as 'begin return new; end'",
            "create trigger t before insert on {work} for each row execute function load_work.g()",
        ),
        ("create index on {work} (customer_id)",),
        ("grant select on {work} to crm_bi_reader",),
        ("alter table {work} alter column customer_id set default 'x'",),
        ("alter table {work} add constraint other check (customer_id <> '')",),
        ("alter table {work} add column extra int",),
    ],
    ids=["statistics_on_a_function", "trigger", "index", "grant", "default", "constraint", "column"],
)
def test_a_work_table_carrying_anything_but_data_is_not_adopted(loader, db, plant):
    """The clean path's work table becomes a raw partition owned by the owner: one carrying
    code (statistics on a function: ANALYZE would run it as the owner; a trigger), an index,
    a grant, a default, a foreign constraint or column is refused, and the day is unchanged.
    Code is refused earlier still: the loader cannot create it."""
    loader.execute("begin")
    load_id = loader.execute(
        "insert into audit.load_log (feed, business_date, file_path, status)"
        " values ('core_customers', '2026-01-05', 'f', 'running') returning load_id"
    ).fetchone()[0]
    work = f"load_work._load_{load_id}"
    loader.execute(
        f"create table {work} (like raw.core_customers including defaults,"
        " constraint _day check (_business_date >= '2026-01-05'::date and _business_date < '2026-01-06'::date))"
    )
    loader.execute(f"alter table {work} alter column _business_date drop default")
    loader.execute("savepoint clean")
    # Control: the plain table would be adopted.
    assert loader.execute(
        "select raw.adopt_partition('core_customers', '2026-01-05', %s)", (load_id,)
    ).fetchone() == ("core_customers_p20260105",)
    loader.execute("rollback to savepoint clean")
    if plant[0].startswith("create function"):
        # Code cannot even be planted: only the owner creates functions and triggers
        # (crm.warehouse.code_guard); adopt_partition's own check stays as a second line.
        with pytest.raises(errors.InsufficientPrivilege, match="only crm_owner creates code"):
            loader.execute(plant[0].format(work=work))
        loader.execute("rollback")
        return
    for statement in plant:
        loader.execute(statement.format(work=work))
    with pytest.raises(errors.InsufficientPrivilege, match="cannot become a partition"):
        loader.execute("select raw.adopt_partition('core_customers', '2026-01-05', %s)", (load_id,))
    loader.execute("rollback")
    assert db.execute("select count(*) from raw.core_customers_p20260105").fetchone() == (3,)


def test_an_existing_warehouse_moves_ownership_to_the_owner(loaded, db, tmp_path):
    """Downgraded to 0013 the loader owns raw and quarantine again (as warehouses did
    before); upgrading moves every table to the owner, keeps the transformer's reads, and
    the loader still loads both ways."""
    command.downgrade(alembic_config(loaded), "0013")
    assert "raw.core_customers" in _loader_owned(db)
    bootstrap(loaded)  # what crm migrate / crm warehouse start run: migrations, then the tables' grants
    assert _loader_owned(db) == []
    with psycopg.connect(role_url("crm_transformer")) as dbt:
        assert dbt.execute("select count(*) from raw.core_customers_p20260105").fetchone() == (3,)
    path = _customers_file(tmp_path, 4)
    with psycopg.connect(role_url("crm_loader")) as conn:
        assert load_file(conn, CUSTOMERS, DAY, path).rows_loaded == 4
        assert load_file(conn, CUSTOMERS, DAY + dt.timedelta(days=1), path, clean_copy=False).rows_loaded == 4
    assert db.execute("select count(*) from raw.core_customers").fetchone() == (8,)
    assert _loader_owned(db) == []
