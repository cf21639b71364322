"""The project-local Airflow: AIRFLOW_HOME under var/, SQLite metadata, warehouse connections.

``crm run`` and ``crm airflow`` start Airflow processes with :func:`airflow_environ`;
the production stack (docker-compose) sets the same variables itself.

Airflow never gets the owner's URL or password: each task connects as its stage's role
(``AIRFLOW_CONN_CRM_LOADER`` .. ``_BI_READER``, or ``crm.warehouse.connect(role)`` on
``CRM_WAREHOUSE_ADDRESS``, the server without credentials).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from crm.dates import BANK_TZ
from crm.settings import REPO_ROOT, ROLES, Settings, get_settings, private_dir

# What the calling shell may hold and Airflow must not inherit: the owner's and the
# superuser's credentials (crm migrate reads them, no task does).
OWNER_VARIABLES = (
    "WAREHOUSE_URL",
    "CRM_WAREHOUSE_URL",
    "WAREHOUSE_PASSWORD",
    "WAREHOUSE_ADMIN_PASSWORD",
    "CRM_OWNER_PASSWORD",
    "CRM_ADMIN_PASSWORD",
    "AIRFLOW_CONN_CRM_WAREHOUSE",
)


def airflow_environ(settings: Settings | None = None) -> dict[str, str]:
    from crm import lineage
    from crm.warehouse import role_url, server_address

    settings = settings or get_settings()
    home = settings.airflow_home
    private_dir(home)
    env = {key: value for key, value in os.environ.items() if key not in OWNER_VARIABLES}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DEFAULT_TIMEZONE": BANK_TZ.key,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos_cache"),
            "GX_ANALYTICS_ENABLED": "False",
            "DO_NOT_TRACK": "1",
            "SCARF_ANALYTICS": "false",
            "CRM_HOME": str(settings.home),
            "CRM_PG_PORT": str(settings.pg_port),
            "CRM_DBT_TARGET_DIR": str(settings.dbt_target),  # the manifest the DAG renders from
            # Airflow spawns `airflow ...` sub-processes: this venv's must come first.
            "PATH": os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", ""))),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_ROOT), str(REPO_ROOT / "include"), env.get("PYTHONPATH", "")) if p
            ),
        }
    )
    # OpenLineage: on, to files under var/lineage/; a value already in the environment wins
    # (AIRFLOW__OPENLINEAGE__TRANSPORT: Marquez; AIRFLOW__OPENLINEAGE__DISABLED=True: off).
    for key, value in lineage.airflow_settings(settings).items():
        env.setdefault(key, value)
    # The server without credentials, and each stage role's connection and password (so a task
    # never reads the owner's secrets; var/secrets.json stays readable to this OS user, docs/security.md).
    env["CRM_WAREHOUSE_ADDRESS"] = server_address(settings)
    for role in ROLES:
        env[f"AIRFLOW_CONN_{role.upper()}"] = role_url(role, settings)
        env[f"CRM_{role.removeprefix('crm_').upper()}_PASSWORD"] = settings.role_password(role)
    return env


def standalone(
    host: str = "127.0.0.1", port: int = 8080, settings: Settings | None = None
) -> tuple[list[str], dict[str, str]]:
    """argv and environment of ``airflow standalone``: its UI / API server on ``host:port``
    (loopback unless told otherwise). Its generated admin password file is made owner-only
    first; the caller also sets umask 077 for what Airflow writes."""
    env = airflow_environ(settings)
    env["AIRFLOW__API__HOST"] = host
    env["AIRFLOW__API__PORT"] = str(port)
    # The task runner calls the execution API at http://localhost:8080 unless told: on any
    # other port every task failed with "connection refused".
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    env["AIRFLOW__API__BASE_URL"] = f"http://{local}:{port}"
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://{local}:{port}/execution/"
    protect_password_file(env)
    exe = Path(sys.executable).with_name("airflow")
    return [str(exe), "standalone"], env


def password_file(env: dict[str, str]) -> Path:
    """The file Airflow's simple auth manager writes the generated admin password to."""
    configured = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    return (
        Path(configured)
        if configured
        else Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    )


def protect_password_file(env: dict[str, str]) -> Path:
    """Create the password file empty and owner-only (0600), or make an existing one so:
    Airflow opens it in append mode, keeping the mode (an empty file reads as no users)."""
    path = password_file(env)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
    return path


def airflow(*args: str, settings: Settings | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run the ``airflow`` CLI of this venv with the project environment."""
    env = airflow_environ(settings)
    exe = Path(sys.executable).with_name("airflow")
    return subprocess.run([str(exe), *args], env=env, check=check)


def ensure_metadata_db(settings: Settings | None = None) -> None:
    """Airflow's metadata database migrated once per Airflow home; its output (a screenful of
    migration lines) goes to ``<home>/logs/airflow-db-migrate.log``, not the screen; a failure
    ends with that file's last lines."""
    settings = settings or get_settings()
    marker = settings.airflow_home / ".db-migrated"
    if marker.exists():
        return
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "airflow-db-migrate.log"
    with open(log_path, "w", encoding="utf-8") as out:
        env = airflow_environ(settings)
        exe = Path(sys.executable).with_name("airflow")
        done = subprocess.run([str(exe), "db", "migrate"], env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = log_path.read_text(errors="replace").splitlines()[-20:]
        raise RuntimeError(
            f"airflow db migrate failed (exit {done.returncode}), {log_path}:\n" + "\n".join(tail)
        )
    marker.touch()
