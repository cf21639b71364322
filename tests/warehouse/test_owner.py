"""The warehouse owner is no superuser, and no Airflow process gets its URL.

crm_admin is the embedded cluster's superuser (initdb -U crm_admin); crm_owner, created by it
with CREATEROLE and CREATEDB only, owns the database and runs the migrations. Airflow gets
the stage roles' connections and the server's address without credentials.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import errors

from crm.settings import ROLES, Settings, get_settings
from crm.warehouse import EmbeddedWarehouse, WarehouseError, ensure_ready, owner_url, role_url
from tests.conftest import _free_port


def test_the_owner_is_no_superuser_and_the_admin_is(db):
    rows = {
        name: flags
        for name, *flags in db.execute(
            "select rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
            " from pg_roles where rolname in ('crm_owner', 'crm_admin')"
        )
    }
    assert rows["crm_owner"] == [False, True, True, False, False]
    assert rows["crm_admin"][0] is True
    # the database and its schemas belong to the owner
    assert db.execute(
        "select pg_get_userbyid(datdba) from pg_database where datname = current_database()"
    ).fetchone() == ("crm_owner",)
    owners = {
        r[0]
        for r in db.execute(
            "select pg_get_userbyid(nspowner) from pg_namespace where nspname in ('raw', 'marts', 'dq')"
        )
    }
    assert owners == {"crm_owner"}


def test_the_owner_cannot_run_operating_system_commands(db):
    with pytest.raises(errors.InsufficientPrivilege):
        db.execute("copy (select 1) to program 'id'")
    with pytest.raises(errors.InsufficientPrivilege):
        db.execute("select pg_read_file('/etc/passwd')")


def test_the_owner_cannot_make_itself_or_a_new_role_superuser(db):
    with pytest.raises(errors.InsufficientPrivilege):
        db.execute("alter role crm_owner superuser")
    with pytest.raises(errors.InsufficientPrivilege):
        db.execute("create role owner_made_su superuser")


def test_a_superuser_owner_is_refused_by_bootstrap(warehouse, pg_server):
    """An external warehouse whose owner is a superuser: crm migrate refuses, naming why."""
    from crm.warehouse import bootstrap

    admin = pg_server.socket_url("postgres", role="crm_admin")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("create role legacy_owner login superuser password 'Lg-4nT9qZx-2wVb7'")
    try:
        parts = urlsplit(warehouse)
        legacy = urlunsplit(
            parts._replace(netloc=f"legacy_owner:Lg-4nT9qZx-2wVb7@{parts.netloc.split('@')[1]}")
        )
        with pytest.raises(WarehouseError, match="owner is a superuser"):
            bootstrap(legacy, get_settings())
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("drop role legacy_owner")


def test_a_cluster_from_before_the_split_is_refused_with_how_to_recreate_it(tmp_path_factory):
    settings = Settings(home=tmp_path_factory.mktemp("old"), pg_port=_free_port(), warehouse_url=None)
    server = EmbeddedWarehouse(settings)
    server.init()  # today's layout, then replaced by the old one: crm_owner as initdb's superuser
    server.destroy()
    from crm.settings import private_dir

    private_dir(server.pgdata)
    server._prepare_root()
    server._run("initdb", "-D", str(server.pgdata), "-U", "crm_owner", "--auth-local=trust", "--locale=C")
    try:
        with pytest.raises(WarehouseError, match="predates the crm_admin/crm_owner split") as err:
            ensure_ready(settings)
        assert "pre-split" in str(err.value) and "docs/security.md" in str(err.value)
        assert settings.role_password("crm_owner") not in str(err.value)
    finally:
        server.stop()


def test_airflow_gets_no_owner_credentials(warehouse, monkeypatch):
    """What crm airflow / crm run hand Airflow: the stage roles' connections, the server's
    address, no owner or admin URL or password; owner_url refuses in that environment."""
    from crm.airflow_env import airflow_environ

    settings = get_settings()
    monkeypatch.setenv("CRM_OWNER_PASSWORD", settings.role_password("crm_owner"))  # in the caller's shell
    get_settings.cache_clear()
    settings = get_settings()
    secrets = {settings.role_password("crm_owner"), settings.role_password("crm_admin")}
    env = airflow_environ(settings)
    for key, value in env.items():
        for secret in secrets:
            assert secret not in value, f"{key} carries the owner's or the admin's password"
        assert "crm_owner" not in value and "crm_admin" not in value, key
    assert "WAREHOUSE_URL" not in env and "AIRFLOW_CONN_CRM_WAREHOUSE" not in env
    assert env["CRM_WAREHOUSE_ADDRESS"] == warehouse.split("//", 1)[0] + "//" + warehouse.split("@", 1)[1]

    # A task's settings (Airflow's environment): the stage roles reach the test's database,
    # the owner is refused.
    monkeypatch.delenv("WAREHOUSE_URL")
    monkeypatch.delenv("CRM_OWNER_PASSWORD")
    for key in (
        "CRM_WAREHOUSE_ADDRESS",
        "CRM_HOME",
        "CRM_PG_PORT",
        *(f"CRM_{r.removeprefix('crm_').upper()}_PASSWORD" for r in ROLES),
    ):
        monkeypatch.setenv(key, env[key])
    task_settings = Settings()
    with pytest.raises(WarehouseError, match="stage roles only"):
        owner_url(task_settings)
    url = role_url("crm_transformer", task_settings)
    assert url == env["AIRFLOW_CONN_CRM_TRANSFORMER"]
    with psycopg.connect(url) as conn:
        assert conn.execute("select current_user, current_database()").fetchone() == (
            "crm_transformer",
            warehouse.rsplit("/", 1)[1],
        )
