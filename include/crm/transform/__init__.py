"""dbt, run in-process with the project's environment (``crm_transformer`` role)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from crm.settings import Settings, get_settings

log = logging.getLogger(__name__)


def dbt_env(
    settings: Settings | None = None, base_url: str | None = None, *, database: str | None = None
) -> dict[str, str]:
    """Environment for dbt's profile (profiles.yml reads only these variables).

    The connection is ``role_url("crm_transformer")`` on the warehouse (or on ``base_url``);
    ``database`` points dbt at another database of the same server (tests use their own).
    """
    from crm.warehouse import role_url

    settings = settings or get_settings()
    url = urlsplit(role_url("crm_transformer", settings, base_url=base_url))
    project = settings.dbt_project_dir
    return {
        "CRM_DBT_HOST": url.hostname or "127.0.0.1",
        "CRM_DBT_PORT": str(url.port or 5432),
        "CRM_DBT_USER": unquote(url.username or ""),
        "CRM_DBT_PASSWORD": unquote(url.password or ""),
        "CRM_DBT_DBNAME": database or url.path.lstrip("/"),
        "DBT_PROFILES_DIR": str(project),
        "DBT_PROJECT_DIR": str(project),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DBT_LOG_PATH": str(settings.home / "logs" / "dbt"),
        "DBT_TARGET_PATH": str(project / "target"),
        # Salt of the PII hashes in the marts (a secret: environment or local secrets file).
        "CRM_PII_SALT": settings.role_password("crm_pii_salt"),
    }


@contextmanager
def _environment(env: dict[str, str]):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_dbt(args: list[str], settings: Settings | None = None, base_url: str | None = None):
    """Invoke dbt in-process (dbtRunner); raises if the command fails."""
    from dbt.cli.main import dbtRunner

    settings = settings or get_settings()
    env = dbt_env(settings, base_url)
    with _environment(env):
        result = dbtRunner().invoke([*args, "--project-dir", env["DBT_PROJECT_DIR"]])
    if not result.success:
        raise RuntimeError(f"dbt {' '.join(args)} failed: {result.exception or 'see the dbt log above'}")
    return result


def manifest_path(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).dbt_project_dir / "target" / "manifest.json"


def ensure_manifest(settings: Settings | None = None) -> Path:
    """``dbt parse`` if the manifest is missing or older than any project file."""
    settings = settings or get_settings()
    path = manifest_path(settings)
    project = settings.dbt_project_dir
    newest = max(
        p.stat().st_mtime
        for p in project.rglob("*")
        if p.is_file() and "target" not in p.parts and "logs" not in p.parts
    )
    if not path.exists() or path.stat().st_mtime < newest:
        run_dbt(["parse"], settings)
    return path


def reprocess_state(settings: Settings | None = None, base_url: str | None = None) -> dict:
    """The newest reprocess request id (0 if none) and the earliest day still to reprocess.

    A run marks only requests up to that id processed (every node saw them) and tests from
    that day on (the late days it rebuilds, not only the run date).
    """
    import psycopg

    from crm.warehouse import role_url

    with psycopg.connect(role_url("crm_transformer", settings, base_url=base_url)) as conn:
        last_id, first_day = conn.execute(
            "select coalesce(max(request_id), 0), min(business_date) filter (where processed_at is null)"
            " from audit.reprocess_requests"
        ).fetchone()
    return {"last_request_id": last_id, "first_pending_day": first_day.isoformat() if first_day else None}


def docs_target(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).dbt_project_dir / "target" / "docs"


def generate_docs(settings: Settings | None = None, base_url: str | None = None) -> Path:
    """``dbt docs generate`` into a target folder of its own; returns that folder.

    ``--no-compile``: the site shows each model's SQL as written, never compiled SQL, which
    carries the PII salt (dim_customer) in clear text.
    """
    target = docs_target(settings)
    # parse writes the (uncompiled) manifest.json the site reads; docs generate --no-compile
    # adds the catalog (columns and types from the warehouse) but writes no manifest.
    run_dbt(["parse", "--target-path", str(target)], settings, base_url)
    run_dbt(["docs", "generate", "--no-compile", "--target-path", str(target)], settings, base_url)
    return target


def _first_day_to_build(day: dt.date, settings: Settings | None, base_url: str | None) -> dt.date:
    import psycopg

    from crm.warehouse import owner_url

    with psycopg.connect(base_url or owner_url(settings)) as conn:
        pending = conn.execute(
            "select min(business_date) from audit.reprocess_requests where processed_at is null and business_date <= %s",
            (day,),
        ).fetchone()[0]
    return min(day, pending) if pending else day


def build(
    day: dt.date | None = None,
    *,
    full_refresh: bool = False,
    select: str | None = None,
    settings: Settings | None = None,
    base_url: str | None = None,
):
    """``dbt build`` (seeds, snapshots, models, tests) for business day ``day``."""
    settings = settings or get_settings()
    args = ["build"]
    # The reporting currency is a setting (CRM_REPORTING_CURRENCY); dbt's var default is HKD.
    variables = {"reporting_currency": settings.reporting_currency}
    if day is not None:
        variables["run_date"] = day.isoformat()
        if not full_refresh:
            # A daily run tests what it built: the day and any late days it reprocesses.
            variables["test_window_start"] = _first_day_to_build(day, settings, base_url).isoformat()
    args += ["--vars", json.dumps(variables)]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        args += ["--select", select]
    return run_dbt(args, settings, base_url)
