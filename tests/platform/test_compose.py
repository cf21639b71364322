"""The production stack (docker-compose.yml, docker/, .env.example), checked without a Docker engine.

The compose file is read with PyYAML (anchors and ``<<`` merges resolved, as compose does);
``${VAR}`` interpolation is left as text, so the tests see what the file asks of ``.env``.
If a compose binary is on PATH, the last test also lets it validate the file for real.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib

import pytest
import yaml

from crm.settings import REPO_ROOT, ROLES, Settings

COMPOSE_TEXT = (REPO_ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict] = COMPOSE["services"]
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
ENV_EXAMPLE = REPO_ROOT / ".env.example"

AIRFLOW_COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
ONE_SHOT = {"airflow-init", "warehouse-init"}
DATABASES = {"airflow-metadata-db": "airflow-db", "warehouse": "warehouse-data"}
CELERY_ONLY = {"redis", "airflow-worker"}
# Services running the project's Airflow image (the x-airflow-common anchor).
AIRFLOW_SERVICES = sorted(name for name, svc in SERVICES.items() if "build" in svc)
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|SALT|TOKEN|_KEY\b")
# ${VAR}, ${VAR:?msg}, ${VAR?msg}: no default, so .env must define it. $${VAR} is a literal $.
REQUIRED_REF = re.compile(r"(?<!\$)\$\{(\w+)(?:(?::?\?)[^}]*)?\}")
ANY_REF = re.compile(r"(?<!\$)\$\{(\w+)")
# Variables compose itself reads from .env.
COMPOSE_OWN_VARS = {"COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME"}


def strings(node) -> list[str]:
    """Every string value in the parsed file: what compose interpolates (comments excluded)."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*strings(key), *strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


INTERPOLATED = "\n".join(strings(COMPOSE))


def env_of(service: str) -> dict[str, str]:
    return {key: str(value) for key, value in (SERVICES[service].get("environment") or {}).items()}


def dotenv(text: str) -> dict[str, str]:
    return dict(re.findall(r"^(\w+)=(.*)$", text, re.M))


def pins(path) -> dict[str, str]:
    text = path.read_text()
    return {
        name.lower().replace("_", "-"): version
        for name, version in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", text, re.M)
    }


# --- services ---------------------------------------------------------------------------


def test_the_airflow_3_components_init_and_two_databases_are_services():
    missing = {*AIRFLOW_COMPONENTS, *ONE_SHOT, *DATABASES} - set(SERVICES)
    assert not missing, f"docker-compose.yml lacks services {sorted(missing)}"
    for name, command in AIRFLOW_COMPONENTS.items():
        assert SERVICES[name]["command"] == command, name
    for name in DATABASES:
        assert SERVICES[name]["image"] == "postgres:16", name
    assert SERVICES["warehouse"]["environment"]["POSTGRES_DB"] == "crm"


def test_airflow_image_is_the_official_airflow_3_image_at_the_projects_pin():
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    pinned = next(
        d.split("==")[1] for d in pyproject["project"]["dependencies"] if d.startswith("apache-airflow==")
    )
    base = re.search(r"^FROM (\S+)", DOCKERFILE.read_text(), re.M).group(1)
    assert base == f"apache/airflow:{pinned}-python3.11", (
        f"docker/Dockerfile FROM {base}, project pins {pinned}"
    )
    assert pinned.startswith("3.")
    assert AIRFLOW_SERVICES, "no service builds docker/Dockerfile"
    for name in AIRFLOW_SERVICES:
        assert SERVICES[name]["build"]["dockerfile"] == "docker/Dockerfile", name
    for name, svc in SERVICES.items():
        image = str(svc.get("image", ""))
        if image.startswith("apache/airflow:"):
            assert re.match(r"apache/airflow:3\.\d+\.\d+", image), f"{name} runs {image}, not Airflow 3"


def test_image_installs_requirements_lock_pins_with_hashes():
    image_lock = REPO_ROOT / "docker" / "requirements-image.lock"
    dockerfile = DOCKERFILE.read_text()
    assert "--require-hashes -r /opt/crm/requirements-image.lock" in dockerfile
    assert re.search(r"pip install .*--no-deps -e /opt/airflow", dockerfile)
    project, image = pins(REPO_ROOT / "requirements.lock"), pins(image_lock)
    drift = {
        name: (project[name], image[name])
        for name in project.keys() & image.keys()
        if project[name] != image[name]
    }
    assert not drift, (
        f"docker/requirements-image.lock differs from requirements.lock {drift}: re-resolve it "
        "(docs/production.md, 'Upgrades')"
    )
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    direct = {re.split(r"[=<>~!\[ ;]", d)[0].lower() for d in pyproject["project"]["dependencies"]}
    assert direct <= image.keys(), f"runtime dependencies missing from the image: {direct - image.keys()}"
    assert {"apache-airflow-providers-celery", "apache-airflow-providers-fab"} <= image.keys()
    entries = re.findall(
        r"^[A-Za-z0-9._-]+==\S+ \\\n(?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+",
        image_lock.read_text(),
        re.M,
    )
    assert len(entries) == len(image), "every pin in docker/requirements-image.lock needs its hashes"


def test_build_context_leaves_out_venv_state_and_secrets():
    ignore = (REPO_ROOT / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*")] == "*", "the build context should be an allow-list"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert not allowed & {".env", ".venv", "var", ".git"}


def test_every_long_running_service_has_a_health_check():
    long_running = set(SERVICES) - ONE_SHOT
    assert long_running >= {*AIRFLOW_COMPONENTS, *DATABASES, *CELERY_ONLY}
    for name in sorted(long_running):
        check = SERVICES[name].get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"
        assert SERVICES[name].get("restart") == "always", f"{name} is not restarted"
    assert "pg_isready" in str(SERVICES["warehouse"]["healthcheck"]["test"])
    assert "/api/v2/monitor/health" in str(SERVICES["airflow-apiserver"]["healthcheck"]["test"])
    for name in ONE_SHOT:
        assert SERVICES[name]["restart"] == "no", f"{name} runs once"
        assert "healthcheck" not in SERVICES[name]


def test_airflow_waits_for_healthy_databases_and_a_successful_init():
    init_deps = SERVICES["airflow-init"]["depends_on"]
    for db in DATABASES:
        assert init_deps[db]["condition"] == "service_healthy", f"airflow-init must wait for {db}"
    for name in set(AIRFLOW_SERVICES) - ONE_SHOT:
        deps = SERVICES[name]["depends_on"]
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
        for db in DATABASES:
            assert deps[db]["condition"] == "service_healthy", f"{name} must wait for {db}"
    assert SERVICES["airflow-worker"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_init_migrates_airflow_and_the_warehouse_and_creates_the_admin():
    script = "\n".join(SERVICES["airflow-init"]["command"])
    for step in ("airflow db migrate", "airflow users create", "ensure_manifest"):
        assert step in script, f"airflow-init does not run {step!r}"
    # The warehouse is migrated by its own one-shot (not Airflow), before airflow-init.
    assert SERVICES["warehouse-init"]["entrypoint"] == ["crm", "migrate"]
    assert "crm migrate" not in script
    deps = SERVICES["airflow-init"]["depends_on"]
    assert deps["warehouse-init"]["condition"] == "service_completed_successfully"
    assert '--password "$${AIRFLOW_ADMIN_PASSWORD}"' in script  # from .env, never literal
    assert env_of("airflow-init")["AIRFLOW_ADMIN_PASSWORD"].startswith("${AIRFLOW_ADMIN_PASSWORD:?")


def test_local_executor_by_default_and_celery_as_a_profile():
    for name in AIRFLOW_COMPONENTS:
        assert env_of(name)["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}", name
        assert "profiles" not in SERVICES[name], f"{name} must start without a profile"
    for name in CELERY_ONLY:
        assert SERVICES[name]["profiles"] == ["celery"], name
    assert env_of("airflow-worker")["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert SERVICES["airflow-worker"]["command"] == "celery worker"
    assert env_of("airflow-scheduler")["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    for name in set(SERVICES) - CELERY_ONLY - {"flower"}:
        assert "profiles" not in SERVICES[name], f"{name} should run with LocalExecutor too"


def test_both_databases_and_the_logs_keep_their_data_in_named_volumes():
    for service, volume in DATABASES.items():
        assert f"{volume}:/var/lib/postgresql/data" in SERVICES[service]["volumes"], service
    assert len(set(DATABASES.values())) == 2, "metadata and warehouse must not share a volume"
    for name in AIRFLOW_SERVICES:
        assert "airflow-logs:/opt/airflow/logs" in SERVICES[name]["volumes"], name
    assert {*DATABASES.values(), "airflow-logs"} <= set(COMPOSE["volumes"])


def test_the_project_is_mounted_into_every_airflow_service():
    for name in AIRFLOW_SERVICES:
        volumes = SERVICES[name]["volumes"]
        for folder in ("dags", "include", "dbt_project", "expectations", "ml"):
            assert f"./{folder}:/opt/airflow/{folder}" in volumes, f"{name} lacks ./{folder}"
        assert "${CRM_LANDING_DIR:-./var/landing}:/opt/airflow/landing" in volumes, name
        env = env_of(name)
        assert env["CRM_LANDING_DIR"] == "/opt/airflow/landing"
        assert env["PYTHONPATH"].split(":")[0] == "/opt/airflow/include", name


def test_telemetry_is_off_in_every_airflow_service():
    for name in AIRFLOW_SERVICES:
        env = env_of(name)
        assert env["AIRFLOW__COSMOS__ENABLE_TELEMETRY"] == "False", name
        assert env["GX_ANALYTICS_ENABLED"] == "False", name
        assert env["SCARF_ANALYTICS"] == "false", name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False", name


def test_airflow_gets_the_warehouse_connections_the_local_airflow_gets():
    env = env_of("airflow-scheduler")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["CRM_WAREHOUSE_ADDRESS"] == "postgresql://warehouse:5432/crm"
    for role in ROLES:
        secret = f"CRM_{role.removeprefix('crm_').upper()}_PASSWORD"
        url = env[f"AIRFLOW_CONN_{role.upper()}"]
        assert re.fullmatch(rf"postgresql://{role}:\$\{{{secret}:\?[^}}]*\}}@warehouse:5432/crm", url), url
        # crm migrate sets the role's password from the same variable
        assert env[secret].startswith(f"${{{secret}:?"), secret


def test_every_crm_variable_is_a_setting():
    fields = {f"CRM_{name.upper()}" for name in Settings.model_fields}
    for name in AIRFLOW_SERVICES:
        unknown = {key for key in env_of(name) if key.startswith("CRM_")} - fields
        assert not unknown, f"{name} sets {unknown}, which crm.settings does not read"


def test_no_airflow_service_gets_the_owner_or_the_superuser():
    """Only warehouse-init (not Airflow) has crm_owner's URL and crm_admin's password; the
    warehouse's superuser is crm_admin, not the owner."""
    for name in sorted(set(AIRFLOW_SERVICES) - {"warehouse-init"}):
        env = env_of(name)
        leaked = {
            key
            for key, value in env.items()
            if re.search(r"crm_owner|crm_admin|WAREHOUSE_PASSWORD|WAREHOUSE_ADMIN_PASSWORD", value)
            or key
            in ("WAREHOUSE_URL", "CRM_OWNER_PASSWORD", "CRM_ADMIN_PASSWORD", "AIRFLOW_CONN_CRM_WAREHOUSE")
        }
        assert not leaked, f"{name} gets the owner's or the superuser's credentials: {sorted(leaked)}"
    init = env_of("warehouse-init")
    assert re.fullmatch(
        r"postgresql://crm_owner:\$\{WAREHOUSE_PASSWORD:\?[^}]*\}@warehouse:5432/crm", init["WAREHOUSE_URL"]
    )
    assert init["CRM_ADMIN_PASSWORD"].startswith("${WAREHOUSE_ADMIN_PASSWORD:?")
    assert not {key for key in init if key.startswith("AIRFLOW__")} - {
        "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY",
    }, "warehouse-init needs no Airflow settings or secrets"
    warehouse = env_of("warehouse")
    assert warehouse["POSTGRES_USER"] == "crm_admin"
    assert warehouse["POSTGRES_PASSWORD"].startswith("${WAREHOUSE_ADMIN_PASSWORD:?")


# --- secrets ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_no_literal_secrets(name):
    for key, value in env_of(name).items():
        if SECRET_NAME.search(key):
            assert re.fullmatch(r"\$\{\w+(?::?\?[^}]*)?\}", value), (
                f"{name}.{key} = {value!r}: a secret must be a required ${{VAR}} from .env"
            )
        for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):
            assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", password), (
                f"{name}.{key} has a literal password in a URL"
            )
    assert "POSTGRES_HOST_AUTH_METHOD" not in env_of(name), f"{name} turns off database passwords"


def test_dockerfile_holds_no_secrets():
    for line in DOCKERFILE.read_text().splitlines():
        if re.match(r"\s*(ENV|ARG)\b", line) or line.startswith("    "):
            assert not SECRET_NAME.search(line.split("=")[0]), f"docker/Dockerfile: {line.strip()}"


def test_env_example_defines_every_required_variable_with_placeholders():
    example = dotenv(ENV_EXAMPLE.read_text())
    required = set(REQUIRED_REF.findall(INTERPOLATED))
    assert {"AIRFLOW_FERNET_KEY", "WAREHOUSE_PASSWORD", "CRM_BI_READER_PASSWORD"} <= required
    assert required <= example.keys(), f"missing in .env.example: {sorted(required - example.keys())}"
    for key, value in example.items():
        if SECRET_NAME.search(key):
            assert value == "change-me", f".env.example {key}={value!r}: placeholders only"
    stale = example.keys() - set(ANY_REF.findall(INTERPOLATED)) - COMPOSE_OWN_VARS
    assert not stale, f".env.example sets {sorted(stale)}, which docker-compose.yml never reads"
    assert ".env" in (REPO_ROOT / ".gitignore").read_text().split()


def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return [exe] if (exe := shutil.which("docker-compose")) else None


def test_compose_accepts_the_file_with_the_example_env(tmp_path):
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no docker compose on PATH: interpolation checked by the tests above only")
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_TEXT)
    (tmp_path / ".env").write_text(ENV_EXAMPLE.read_text())
    for profiles in ([], ["--profile", "celery"], ["--profile", "celery", "--profile", "flower"]):
        run = subprocess.run(
            [*cli, *profiles, "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True, check=False
        )
        assert run.returncode == 0 and not run.stderr.strip(), run.stderr
    (tmp_path / ".env").write_text("")  # every required secret missing
    run = subprocess.run(
        [*cli, "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert "required variable" in run.stderr


def test_flower_requires_a_login():
    """Flower lists every task's arguments and can revoke tasks: the profile needs a login from
    .env (required variable), and its health check uses it."""
    flower = env_of("flower")
    assert flower["AIRFLOW__CELERY__FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH_PASSWORD:?")
    assert "$$AIRFLOW__CELERY__FLOWER_BASIC_AUTH" in " ".join(SERVICES["flower"]["healthcheck"]["test"])
    assert SERVICES["flower"]["ports"][0].startswith("${AIRFLOW_BIND_ADDRESS:-127.0.0.1}:")
