"""The access audit: the reading roles' statements reach audit.bi_access from the server's CSV
log, nobody else's; importing twice adds nothing; only the owner reads the audit."""

from __future__ import annotations

import secrets
import stat
import time
import uuid
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from typer.testing import CliRunner

from crm.privacy.access import command_tag, complete_records, import_access_log, relations_named
from crm.warehouse import role_url

runner = CliRunner()


def _log_dir(pg_server):
    from crm.warehouse.server import AUDIT_LOG_DIR

    return pg_server.pgdata / AUDIT_LOG_DIR


def _import_until(url, log_dir, db, marker: str, expected: int, timeout: float = 15.0):
    """Import until ``expected`` statements holding ``marker`` arrived (the collector writes
    asynchronously); the rows of audit.bi_access holding the marker."""
    deadline = time.monotonic() + timeout
    while True:
        import_access_log(url, log_dir)
        rows = db.execute(
            "select role_name, logged_at, command_tag, relations, statement, parameters, database_name"
            " from audit.bi_access where statement like %s or parameters like %s order by session_line",
            (f"%{marker}%", f"%{marker}%"),
        ).fetchall()
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.3)


def _login_url(base: str, role: str, password: str) -> str:
    parts = urlsplit(base)
    netloc = f"{role}:{quote(password, safe='')}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.fixture
def mart(db):
    with psycopg.connect(role_url("crm_transformer"), autocommit=True) as dbt:
        dbt.execute("create table marts.customer_segments (customer_id text, quadrant text)")
        dbt.execute("insert into marts.customer_segments values ('C000000001', 'A')")
    return "marts.customer_segments"


def test_bi_reads_are_imported_and_writers_are_not_logged(warehouse, db, pg_server, mart):
    marker = uuid.uuid4().hex
    log_dir = _log_dir(pg_server)
    started = db.execute("select clock_timestamp()").fetchone()[0]
    with psycopg.connect(role_url("crm_bi_reader"), autocommit=True) as bi:
        assert bi.execute(f"select quadrant, 'simple-{marker}' from {mart}").fetchall() == [
            ("A", f"simple-{marker}")
        ]
        bi.execute('select count(*) from "marts"."customer_segments" where customer_id <> %s', (marker,))
    with psycopg.connect(role_url("crm_loader"), autocommit=True) as loader:
        loader.execute(f"select 'loader-{marker}'")
    with psycopg.connect(role_url("crm_transformer"), autocommit=True) as dbt:
        dbt.execute(f"select 'transformer-{marker}' from {mart}")
    db.execute(f"select 'owner-{marker}'")
    ended = db.execute("select clock_timestamp()").fetchone()[0]

    rows = _import_until(warehouse, log_dir, db, marker, expected=2)
    assert len(rows) == 2, rows
    (simple, extended) = rows
    assert simple[0] == extended[0] == "crm_bi_reader"
    assert simple[4] == f"select quadrant, 'simple-{marker}' from {mart}"
    assert simple[2] == "SELECT" and simple[3] == [mart] and simple[5] is None
    assert extended[3] == [mart] and extended[5] == f"parameters: $1 = '{marker}'"
    assert all(started <= row[1] <= ended for row in rows), (started, ended, [r[1] for r in rows])
    assert {row[6] for row in rows} == {urlsplit(warehouse).path.lstrip("/")}

    # The writers' statements never reach the log at all, let alone the audit.
    logged = b"".join(path.read_bytes() for path in log_dir.glob("*.csv"))
    assert f"simple-{marker}".encode() in logged
    for writer in ("loader", "transformer", "owner"):
        assert f"{writer}-{marker}".encode() not in logged, writer

    # Twice: nothing new, also when the file offsets are forgotten (the key deduplicates).
    count = db.execute("select count(*) from audit.bi_access").fetchone()[0]
    again = import_access_log(warehouse, log_dir)
    assert again.imported == 0
    db.execute("delete from audit.bi_access_files")
    reread = import_access_log(warehouse, log_dir)
    assert reread.imported == 0 and reread.statements >= 2
    assert db.execute("select count(*) from audit.bi_access").fetchone()[0] == count


def test_log_files_and_audit_tables_are_owner_only(warehouse, db, pg_server, mart):
    with psycopg.connect(role_url("crm_bi_reader"), autocommit=True) as bi:
        bi.execute(f"select count(*) from {mart}")
    import_access_log(warehouse, _log_dir(pg_server))
    files = list(_log_dir(pg_server).glob("*"))
    assert files and any(f.suffix == ".csv" for f in files)
    assert {oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {oct(0o600)}
    assert stat.S_IMODE(_log_dir(pg_server).stat().st_mode) == 0o700
    # A reader cannot switch its own audit off, for a session or for its later ones.
    with psycopg.connect(role_url("crm_bi_reader"), autocommit=True) as bi:
        for statement in (
            "set log_statement = 'none'",
            "alter role crm_bi_reader set log_statement = 'none'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                bi.execute(statement)
    for role in ("crm_bi_reader", "crm_loader", "crm_transformer", "crm_ml"):
        with psycopg.connect(role_url(role), autocommit=True) as conn:
            for table in ("audit.bi_access", "audit.bi_access_files"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(f"select * from {table}")
    settings = dict(
        db.execute(
            "select r.rolname, s.setconfig from pg_db_role_setting s join pg_roles r on r.oid = s.setrole"
            " join pg_database d on d.oid = s.setdatabase where d.datname = current_database()"
        ).fetchall()
    )
    assert settings.get("crm_bi_reader") == ["log_statement=all"]
    assert not {"crm_loader", "crm_transformer", "crm_ml", "crm_owner"} & settings.keys()


def test_rm_logins_are_audited_and_the_cli_summarises(warehouse, db, pg_server, mart):
    from crm.cli import app
    from crm.rm import grant_login, revoke_login

    role, password, marker = f"rm_{uuid.uuid4().hex[:12]}", secrets.token_urlsafe(18), uuid.uuid4().hex
    grant_login(warehouse, role, "RM001", password)
    try:
        # An attempt is logged too: crm_rm is granted only the marts dbt's hook names.
        with (
            psycopg.connect(_login_url(warehouse, role, password), autocommit=True) as rm,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            rm.execute(f"select '{marker}', count(*) from {mart}")
        rows = _import_until(warehouse, _log_dir(pg_server), db, marker, expected=1)
        assert [(r[0], r[3]) for r in rows] == [(role, [mart])]
        result = runner.invoke(app, ["privacy", "access-log", "--log-dir", str(_log_dir(pg_server))])
        assert result.exit_code == 0, result.output
        line = next(row for row in result.output.splitlines() if row.startswith(role))
        assert line.split()[1:3] == ["1", "1"], line
        assert "0 new" in result.output
    finally:
        revoke_login(warehouse, role)


def test_migration_0016_downgrades_and_upgrades_again(warehouse, db):
    from alembic import command

    from crm.warehouse.migrate import alembic_config, migrate

    setting = (
        "select count(*) from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase"
        " where d.datname = current_database() and s.setrole = 'crm_bi_reader'::regrole"
    )
    assert db.execute(setting).fetchone() == (1,)
    command.downgrade(alembic_config(warehouse), "0015")
    assert db.execute(
        "select to_regclass('audit.bi_access'), to_regclass('audit.bi_access_files')"
    ).fetchone() == (
        None,
        None,
    )
    assert db.execute(setting).fetchone() == (0,)
    migrate(warehouse)
    assert db.execute(setting).fetchone() == (1,)


def test_parsing_helpers():
    assert relations_named('SELECT * FROM Marts.Dim_Customer d JOIN "dq"."Published" p ON true, rm . x') == [
        "dq.Published",
        "marts.dim_customer",
        "rm.x",
    ]
    assert relations_named("select 'marts' || '.x' from xmarts.y, public.marts, \"Marts\".z") == []
    assert command_tag("/* bi */ -- tool\n (WITH x as (select 1) select * from x)") == "WITH"
    whole = b'a,"multi\nline ""q""",b\nc,"open\n'
    assert complete_records(whole) == len(b'a,"multi\nline ""q""",b\n')


def test_a_malformed_log_line_is_named_by_file_and_line_without_its_values():
    from crm.privacy.access import AccessLogError, parse_statements

    with pytest.raises(AccessLogError, match=r"^postgresql-x\.csv:12: 3 columns") as refused:
        parse_statements(b"a,b,c\n", "postgresql-x.csv", 11, "crm")
    assert "a,b" not in str(refused.value)
