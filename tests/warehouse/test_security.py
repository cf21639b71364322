"""Security review's open doors, each closed: placeholders and weak salts refused, owner-only
folders, no password on psql's command line, connection limits per role, sslmode on every URL,
Airflow's UI on loopback with an owner-only admin password file."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crm.settings import ROLES, InsecureSecret, Settings, get_settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- 3. placeholders and weak salts ------------------------------------------------------
@pytest.mark.parametrize(
    ("role", "variable"),
    [
        ("crm_owner", "CRM_OWNER_PASSWORD"),
        ("crm_loader", "CRM_LOADER_PASSWORD"),
        ("crm_bi_reader", "CRM_BI_READER_PASSWORD"),
    ],
)
@pytest.mark.parametrize("placeholder", ["change-me", "CHANGE_ME", "changeme"])
def test_a_placeholder_password_is_refused_naming_the_variable_not_the_value(
    tmp_path, monkeypatch, role, variable, placeholder
):
    monkeypatch.setenv(variable, placeholder)
    settings = Settings(home=tmp_path)
    with pytest.raises(InsecureSecret) as err:
        settings.role_password(role)
    assert variable in str(err.value)
    assert placeholder.lower() not in str(err.value).lower()


def test_a_placeholder_in_warehouse_url_is_refused(tmp_path):
    from crm.warehouse import owner_url, role_url

    settings = Settings(home=tmp_path).model_copy(
        update={"warehouse_url": "postgresql://crm_owner:change-me@warehouse:5432/crm"}
    )
    with pytest.raises(InsecureSecret, match="WAREHOUSE_URL") as err:
        owner_url(settings)
    assert "change-me" not in str(err.value)
    # A role's URL takes only the server's address from WAREHOUSE_URL, never the owner's password.
    url = role_url("crm_loader", settings)
    assert "change-me" not in url and "crm_owner" not in url


@pytest.mark.parametrize(
    "salt", ["change-me", "a" * 16, "Z" * 40, "change-me-change-me-change-me", "short-salt"]
)
def test_a_weak_pii_salt_is_refused_naming_the_variable_not_the_value(tmp_path, monkeypatch, salt):
    from crm.warehouse.migrate import sync_secrets

    monkeypatch.setenv("CRM_PII_SALT", salt)
    settings = Settings(home=tmp_path)
    with pytest.raises(InsecureSecret) as err:
        settings.role_password("crm_pii_salt")
    assert "CRM_PII_SALT" in str(err.value) and salt not in str(err.value)
    with pytest.raises(InsecureSecret):  # before any connection is attempted
        sync_secrets("postgresql://nobody@127.0.0.1:1/none", settings)


def test_a_strong_salt_and_real_passwords_are_accepted(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_PII_SALT", "x7Hq2-pLw9_vR4tZk8mB-Jd3sQ6yNa1cUe5")
    monkeypatch.setenv("CRM_LOADER_PASSWORD", "Qm3vT8-zXr2wPk5nLs9d")
    settings = Settings(home=tmp_path)
    assert settings.role_password("crm_pii_salt") == "x7Hq2-pLw9_vR4tZk8mB-Jd3sQ6yNa1cUe5"
    assert settings.role_password("crm_loader") == "Qm3vT8-zXr2wPk5nLs9d"


# -- 2. owner-only folders and files -------------------------------------------------------
def test_local_state_folders_are_created_owner_only(tmp_path, monkeypatch):
    from crm.airflow_env import airflow_environ
    from crm.logs import setup_logging
    from crm.settings import private_dir

    monkeypatch.setattr(os, "umask", os.umask)  # whatever the umask, 0700
    old = os.umask(0o002)
    try:
        home = tmp_path / "a" / "var"
        settings = Settings(home=home)
        settings.role_password("crm_loader")  # writes var/secrets.json
        assert _mode(home) == 0o700 and _mode(tmp_path / "a") == 0o700
        assert _mode(home / "secrets.json") == 0o600

        airflow_environ(settings)
        assert _mode(settings.airflow_home) == 0o700

        root = logging.getLogger()
        monkeypatch.setattr(root, "handlers", [])
        monkeypatch.setattr(root, "level", root.level)
        fresh = tmp_path / "b" / "var"
        setup_logging(log_file=fresh / "logs" / "crm.log")
        for handler in root.handlers:
            handler.close()
        assert _mode(fresh) == _mode(fresh / "logs") == 0o700
        assert _mode(fresh / "logs" / "crm.log") == 0o600

        landing = private_dir(fresh / "landing" / "atm")
        assert _mode(fresh / "landing") == _mode(landing) == 0o700
        existing = tmp_path / "shared"
        existing.mkdir(mode=0o755)
        existing.chmod(0o755)
        private_dir(existing)
        assert _mode(existing) == 0o755, "an existing folder keeps its mode"
    finally:
        os.umask(old)


def test_the_embedded_server_folders_are_owner_only(tmp_path):
    """pgdata and the CRM_HOME it creates; under root the server's user may only traverse
    CRM_HOME (pgserver would open it to everyone)."""
    from crm.warehouse.server import EmbeddedWarehouse

    home = tmp_path / "var"
    server = EmbeddedWarehouse(Settings(home=home))
    server.pgdata.parent.mkdir(mode=0o700)
    server.pgdata.parent.chmod(0o700)
    server._prepare_root()
    if server._as_root:
        assert _mode(home) == 0o711
        assert _mode(server.pgdata) == 0o700
    else:
        assert _mode(home) == 0o700 and not server.pgdata.exists()


# -- 4. psql gets the password from its environment ---------------------------------------
def test_psql_command_line_carries_no_password(warehouse, monkeypatch):
    from crm.cli import app

    calls = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    result = CliRunner().invoke(app, ["warehouse", "psql", "-tAc", "select current_user"])
    assert result.exit_code == 0, result.output
    ((path, argv, env),) = calls
    password = get_settings().role_password("crm_owner")
    assert not [a for a in argv if password in a or "crm_owner:" in a], argv
    assert argv[0] == path and argv[1].startswith("postgresql://crm_owner@127.0.0.1:")
    assert env["PGPASSWORD"] == password
    # The same argv and environment reach the server (non-interactively).
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "crm_owner"


# -- 5. connection limits -----------------------------------------------------------------
def test_every_platform_role_has_a_connection_limit(db):
    limits = dict(
        db.execute("select rolname, rolconnlimit from pg_roles where rolname = any(%s)", (list(ROLES),))
    )
    assert limits.keys() == set(ROLES)
    assert limits["crm_bi_reader"] == 20
    assert all(0 < limit <= 20 for limit in limits.values()), limits
    assert sum(limits.values()) < 97  # the owner keeps room below max_connections = 100


# -- 6. sslmode -----------------------------------------------------------------------------
def test_sslmode_is_added_to_every_url_when_set(tmp_path, monkeypatch):
    from crm.warehouse import owner_url, role_url

    settings = Settings(home=tmp_path)
    assert "sslmode" not in owner_url(settings) and "sslmode" not in role_url("crm_ml", settings)

    monkeypatch.setenv("CRM_PG_SSLMODE", "verify-full")
    settings = Settings(home=tmp_path)
    assert owner_url(settings).endswith("?sslmode=verify-full")
    for role in ROLES:
        assert role_url(role, settings).endswith("?sslmode=verify-full")
    external = settings.model_copy(
        update={
            "warehouse_url": "postgresql://crm_owner:S3cr3t-x@db:5432/crm?sslmode=disable&application_name=x"
        }
    )
    assert (
        owner_url(external)
        == "postgresql://crm_owner:S3cr3t-x@db:5432/crm?application_name=x&sslmode=verify-full"
    )
    assert role_url("crm_bi_reader", external).endswith("/crm?application_name=x&sslmode=verify-full")

    # dbt too: its profile reads the mode crm.transform.dbt_env takes from the role's URL.
    from crm.transform import dbt_env

    assert dbt_env(settings)["CRM_DBT_SSLMODE"] == "verify-full"
    assert dbt_env(Settings(home=tmp_path, pg_sslmode=None))["CRM_DBT_SSLMODE"] == "prefer"
    profile = (settings.dbt_project_dir / "profiles.yml").read_text()
    assert "sslmode: \"{{ env_var('CRM_DBT_SSLMODE'" in profile

    monkeypatch.setenv("CRM_PG_SSLMODE", "sometimes")
    with pytest.raises(ValueError, match="pg_sslmode"):
        Settings(home=tmp_path)


# -- 1. Airflow standalone ------------------------------------------------------------------
@pytest.mark.parametrize(("options", "host"), [([], "127.0.0.1"), (["--host", "0.0.0.0"], "0.0.0.0")])
def test_airflow_binds_loopback_unless_told_and_its_password_file_is_owner_only(
    crm_home, monkeypatch, options, host
):
    import crm.warehouse
    from crm.cli import app

    calls, umasks = [], []
    monkeypatch.setattr(crm.warehouse, "ensure_ready", lambda *a, **k: None)
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    monkeypatch.setattr(os, "umask", lambda mask: umasks.append(mask) or 0o022)
    get_settings.cache_clear()
    passwords = get_settings().airflow_home / "simple_auth_manager_passwords.json.generated"
    if passwords.exists():
        passwords.chmod(0o644)
    result = CliRunner().invoke(app, ["airflow", "--port", "8093", *options])
    assert result.exit_code == 0, result.output
    ((path, argv, env),) = calls
    assert argv == [path, "standalone"]
    assert env["AIRFLOW__API__HOST"] == host and env["AIRFLOW__API__PORT"] == "8093"
    # Tasks reach the execution API on the port the server listens on, not Airflow's 8080.
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8093/execution/"
    assert umasks == [0o077]
    assert _mode(passwords) == 0o600
