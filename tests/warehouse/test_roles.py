"""Platform roles: each stage may touch only its schemas; BI sees marts and nothing else."""

from __future__ import annotations

import psycopg
import pytest

from crm.warehouse import role_url
from crm.warehouse.migrate import current_revision, migrate


def test_migrations_are_idempotent(warehouse):
    before = current_revision(warehouse)
    migrate(warehouse)
    assert current_revision(warehouse) == before is not None


def test_bi_reader_is_refused_on_raw_and_quarantine(db):
    db.execute("create table raw.secret (national_id text)")
    db.execute("create table quarantine.secret (raw_line text)")
    with psycopg.connect(role_url("crm_bi_reader"), autocommit=True) as bi:
        for table in ("raw.secret", "quarantine.secret", "audit.load_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                bi.execute(f"select * from {table}")


def test_bi_reader_reads_marts_built_by_the_transformer(db):
    with psycopg.connect(role_url("crm_transformer"), autocommit=True) as dbt:
        dbt.execute("create table marts.customer_segments (customer_id text, quadrant text)")
        dbt.execute("insert into marts.customer_segments values ('C000000001', 'A')")
        dbt.execute("create view marts.quadrants as select quadrant from marts.customer_segments")
    with psycopg.connect(role_url("crm_bi_reader")) as bi:
        assert bi.execute("select quadrant from marts.customer_segments").fetchall() == [("A",)]
        assert bi.execute("select count(*) from marts.quadrants").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bi.execute("create table marts.mine (x int)")


def test_loader_cannot_write_marts_and_ml_cannot_read_raw(db):
    with (
        psycopg.connect(role_url("crm_loader"), autocommit=True) as loader,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        loader.execute("create table marts.nope (x int)")
    db.execute("create table raw.t (x int)")
    with psycopg.connect(role_url("crm_ml"), autocommit=True) as ml:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            ml.execute("select * from raw.t")
        ml.execute(
            "insert into ml.churn_scores (customer_id, as_of_date, churn_probability, model_version)"
            " values ('C000000001', '2026-01-31', 0.2, 'test')"
        )


def test_passwords_are_not_in_the_repository():
    import subprocess

    from crm.settings import REPO_ROOT, ROLES, get_settings

    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    secrets = [get_settings().role_password(r).encode() for r in ROLES]
    for name in filter(None, tracked):
        path = REPO_ROOT / name.decode()
        if path.is_file() and path.stat().st_size < 5_000_000:
            data = path.read_bytes()
            assert not any(s in data for s in secrets), f"{name.decode()} holds a role password"


def test_a_short_pii_salt_is_refused(warehouse):
    from crm.settings import get_settings
    from crm.warehouse.migrate import sync_secrets

    for salt, why in (("Xy7-sh0rt-K3y!", "must be at least 32"), ("change-me", "is a placeholder")):
        settings = get_settings().model_copy(update={"pii_salt": salt})
        with pytest.raises(ValueError, match=f"CRM_PII_SALT {why}") as refused:
            sync_secrets(warehouse, settings)
        assert salt not in str(refused.value), "the message never shows the key"


def test_role_passwords_reach_the_server_only_as_scram_verifiers(warehouse, monkeypatch):
    """crm migrate sends each role's SCRAM verifier, never its password, and the PII salt
    only as COPY data: a server that logs statements (with their parameters) logs neither.
    Every role still logs in with its password; the salt is stored."""
    from crm.settings import ROLES, get_settings
    from crm.warehouse.migrate import sync_secrets

    sent: list[str] = []
    execute = psycopg.Connection.execute

    def recording(self, query, params=None, **kwargs):
        sent.append(query.as_string(self) if hasattr(query, "as_string") else str(query))
        sent.extend(str(p) for p in params or ())
        return execute(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", recording)
    sync_secrets(warehouse, get_settings())
    monkeypatch.undo()
    passwords = [get_settings().role_password(role) for role in ROLES]
    alters = [q for q in sent if q.startswith("alter role")]
    assert len(alters) == len(ROLES) and all("SCRAM-SHA-256$4096:" in q for q in alters)
    assert not [q for q in sent if any(p in q for p in passwords)], "a clear-text password was sent"
    salt = get_settings().role_password("crm_pii_salt")
    assert not [q for q in sent if salt in q], "the PII salt was sent in a statement or parameter"
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("select salt from private.pii_salt").fetchone() == (salt,)
    for role in ROLES:
        with psycopg.connect(role_url(role, base_url=warehouse)) as conn:
            assert conn.execute("select current_user").fetchone()[0] == role
