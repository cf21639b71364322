"""The production stack's compose file, checked without a Docker engine."""

from __future__ import annotations

import re

import pytest
import yaml

from crm.settings import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
LONG_RUNNING = [name for name, svc in SERVICES.items() if svc.get("restart") == "always"]
REQUIRED_VARS = set(re.findall(r"\$\{(\w+):\?", (REPO_ROOT / "docker-compose.yml").read_text()))


def test_the_airflow_3_components_and_two_databases_are_there():
    for name in (
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-init",
        "airflow-metadata-db",
        "warehouse",
    ):
        assert name in SERVICES, name
    assert SERVICES["airflow-apiserver"]["command"] == "api-server"
    assert SERVICES["airflow-dag-processor"]["command"] == "dag-processor"
    dockerfile = (REPO_ROOT / SERVICES["airflow-scheduler"]["build"]["dockerfile"]).read_text()
    assert re.search(r"^FROM apache/airflow:3\.\d+\.\d+", dockerfile, re.M)
    assert "requirements.lock" in dockerfile


def test_every_long_running_service_has_a_health_check():
    assert len(LONG_RUNNING) >= 7
    for name in LONG_RUNNING:
        assert "healthcheck" in SERVICES[name], f"{name} has no healthcheck"


def test_local_executor_by_default_and_celery_as_a_profile():
    env = SERVICES["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"
    assert SERVICES["redis"]["profiles"] == ["celery"]
    assert SERVICES["airflow-worker"]["profiles"] == ["celery"]
    assert SERVICES["airflow-worker"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert "profiles" not in SERVICES["airflow-scheduler"]


def test_both_databases_keep_their_data_in_named_volumes():
    assert "airflow-db:/var/lib/postgresql/data" in SERVICES["airflow-metadata-db"]["volumes"]
    assert "warehouse-data:/var/lib/postgresql/data" in SERVICES["warehouse"]["volumes"]
    assert {"airflow-db", "warehouse-data"} <= set(COMPOSE["volumes"])


@pytest.mark.parametrize("name", [n for n, s in SERVICES.items() if "environment" in s])
def test_no_literal_secrets(name):
    for key, value in SERVICES[name]["environment"].items():
        text = str(value)
        if re.search(r"PASSWORD|SECRET|FERNET|SALT", key) or "@" in text:
            assert "${" in text, f"{name}.{key} holds a literal secret"
        assert not re.search(r"://[^:/]+:(?!\$\{)[^@]+@", text), f"{name}.{key} has a password in a URL"


def test_env_example_defines_every_required_variable():
    example = (REPO_ROOT / ".env.example").read_text()
    defined = set(re.findall(r"^(\w+)=", example, re.M))
    assert REQUIRED_VARS, "the compose file must require its secrets"
    assert defined >= REQUIRED_VARS, f"missing in .env.example: {REQUIRED_VARS - defined}"
    assert ".env\n" in (REPO_ROOT / ".gitignore").read_text()


def test_the_project_is_mounted_into_airflow():
    volumes = SERVICES["airflow-scheduler"]["volumes"]
    for folder in ("dags", "include", "dbt_project", "expectations", "ml"):
        assert f"./{folder}:/opt/airflow/{folder}" in volumes
    assert (
        SERVICES["airflow-apiserver"]["depends_on"]["airflow-init"]["condition"]
        == "service_completed_successfully"
    )
