"""dbt, run in-process with the project's environment (``crm_transformer`` role)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from crm.settings import Settings, environment, get_settings

log = logging.getLogger(__name__)


def dbt_env(
    settings: Settings | None = None,
    base_url: str | None = None,
    *,
    database: str | None = None,
    connection_url: str | None = None,
) -> dict[str, str]:
    """Environment for dbt's profile (profiles.yml reads only these variables).

    The connection is ``connection_url`` (crm_transform passes its Airflow connection
    ``crm_transformer``), else ``role_url("crm_transformer")`` on the warehouse (or on
    ``base_url``); ``database`` points dbt at another database of the same server (tests
    use their own).
    """
    from crm.warehouse import role_url

    settings = settings or get_settings()
    url = urlsplit(connection_url or role_url("crm_transformer", settings, base_url=base_url))
    project = settings.dbt_project_dir
    return {
        "CRM_DBT_HOST": url.hostname or "127.0.0.1",
        "CRM_DBT_PORT": str(url.port or 5432),
        "CRM_DBT_USER": unquote(url.username or ""),
        "CRM_DBT_PASSWORD": unquote(url.password or ""),
        "CRM_DBT_DBNAME": database or url.path.lstrip("/"),
        # TLS as the URL says (CRM_PG_SSLMODE puts it there); libpq's default otherwise.
        "CRM_DBT_SSLMODE": dict(parse_qsl(url.query)).get("sslmode", "prefer"),
        "DBT_PROFILES_DIR": str(project),
        "DBT_PROJECT_DIR": str(project),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DBT_LOG_PATH": str(settings.home / "logs" / "dbt"),
        "DBT_TARGET_PATH": str(settings.dbt_target),
    }


def run_dbt(
    args: list[str],
    settings: Settings | None = None,
    base_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    connection_url: str | None = None,
):
    """Invoke dbt in-process (dbtRunner); raises if the command fails."""
    from dbt.cli.main import dbtRunner

    settings = settings or get_settings()
    env = dbt_env(settings, base_url, connection_url=connection_url) | (extra_env or {})
    with environment(env):
        result = dbtRunner().invoke([*args, "--project-dir", env["DBT_PROJECT_DIR"]])
    if not result.success:
        raise RuntimeError(f"dbt {' '.join(args)} failed: {result.exception or 'see the dbt log above'}")
    return result


def manifest_path(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).dbt_target / "manifest.json"


def ensure_manifest(settings: Settings | None = None) -> Path:
    """``dbt parse`` if the manifest is missing or older than any project file."""
    settings = settings or get_settings()
    path = manifest_path(settings)
    project = settings.dbt_project_dir
    newest = max(
        p.stat().st_mtime
        for p in project.rglob("*")
        if p.is_file() and p.relative_to(project).parts[0] not in ("target", "logs", "dbt_packages")
    )
    if not path.exists() or path.stat().st_mtime < newest:
        run_dbt(["parse"], settings)
    return path


def plan_build(
    day: dt.date | None = None, settings: Settings | None = None, base_url: str | None = None
) -> dict:
    """What one build covers, decided once so every node of a run builds the same days.

    ``run_date``: ``day``, or the last day loaded (asset-triggered runs have no logical
    date); ``test_window_start``: the earliest of it and the late days still to reprocess
    (tests cover every day rebuilt); ``last_request_id``: the newest reprocess request, the
    last one the run may mark processed (every node saw it).
    """
    import psycopg

    from crm.warehouse import role_url

    with psycopg.connect(role_url("crm_transformer", settings, base_url=base_url)) as conn:
        if day is None:
            day = conn.execute(
                "select max(business_date) from audit.load_log where status = 'loaded'"
            ).fetchone()[0]
        last_id, first_pending = conn.execute(
            "select coalesce(max(request_id), 0),"
            " min(business_date) filter (where processed_at is null and business_date <= %s)"
            " from audit.reprocess_requests",
            (day,),
        ).fetchone()
    if day is None:  # nothing loaded yet: dbt falls back to its own default
        return {"run_date": "", "test_window_start": "", "last_request_id": last_id}
    first = min(day, first_pending) if first_pending else day
    return {"run_date": day.isoformat(), "test_window_start": first.isoformat(), "last_request_id": last_id}


def docs_target(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).dbt_target / "docs"


def generate_docs(settings: Settings | None = None, base_url: str | None = None) -> Path:
    """``dbt docs generate`` into a target folder of its own; returns that folder.

    ``--no-compile``: the site shows each model's SQL as written. Compiling would run the
    models' own queries (the days to build, late days) against the warehouse for a page of
    documentation, and show SQL for one arbitrary run date.
    """
    target = docs_target(settings)
    # parse writes the (uncompiled) manifest.json the site reads; docs generate --no-compile
    # adds the catalog (columns and types from the warehouse) but writes no manifest.
    run_dbt(["parse", "--target-path", str(target)], settings, base_url)
    run_dbt(["docs", "generate", "--no-compile", "--target-path", str(target)], settings, base_url)
    return target


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
    # The day and the test window change every run: environment variables (the dbt macro
    # build_setting), so dbt keeps its partial parse instead of parsing everything again.
    run = {"CRM_RUN_DATE": "", "CRM_TEST_WINDOW_START": ""}
    if day is not None:
        run["CRM_RUN_DATE"] = day.isoformat()
        if not full_refresh:
            # A daily run tests what it built: the day and any late days it reprocesses.
            run["CRM_TEST_WINDOW_START"] = plan_build(day, settings, base_url)["test_window_start"]
    if full_refresh:
        args.append("--full-refresh")
    elif day is not None:
        # Unit tests check logic, not data: CI and full refreshes run them, a daily run of
        # unchanged code does not (dbt's advice for production builds).
        args += ["--exclude-resource-type", "unit_test"]
    if select:
        args += ["--select", select]
    return run_dbt(args, settings, base_url, extra_env=run)


# --- the daily dbt stage of crm_transform ------------------------------------------------

# Statuses of run_results.json / sources.json that fail a run (a warning does not).
FAILED_STATUSES = ("error", "fail", "runtime error")


class DbtStageError(RuntimeError):
    """The daily dbt stage failed; the message names every failed node and the logs."""

    def __init__(self, message: str, failed: list[dict], *, data_failure: bool):
        super().__init__(message)
        self.failed = failed
        # True: tests failed or sources are stale (the data, not the infrastructure): running
        # the same build again cannot pass, so crm_transform does not retry it.
        self.data_failure = data_failure


def _failed_nodes(results_file: Path, target: Path, project: Path) -> list[dict]:
    """The failed nodes of a run_results.json / sources.json: id, status, message, where it
    is defined and its compiled SQL (from the manifest the same run wrote)."""
    import json

    failed = [
        node
        for node in json.loads(results_file.read_text())["results"]
        if node.get("status") in FAILED_STATUSES
    ]
    if not failed:
        return []
    manifest_file = target / "manifest.json"
    manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
    known = manifest.get("nodes", {}) | manifest.get("sources", {})
    described = []
    for node in failed:
        unique_id = node["unique_id"]
        info = known.get(unique_id, {})
        compiled = info.get("compiled_path") or ""
        if compiled:
            compiled = str(project / compiled)  # relative to the project (absolute: unchanged)
        described.append(
            {
                "unique_id": unique_id,
                "resource_type": unique_id.split(".", 1)[0],
                "name": info.get("name") or unique_id.rsplit(".", 1)[-1],
                "status": node["status"],
                "message": (node.get("message") or node.get("error") or "").strip(),
                "file": info.get("original_file_path") or "",
                "compiled": compiled,
            }
        )
    return described


def _summary(results_file: Path) -> dict[str, int]:
    import json

    counts: dict[str, int] = {}
    for node in json.loads(results_file.read_text())["results"]:
        counts[node.get("status") or "?"] = counts.get(node.get("status") or "?", 0) + 1
    return dict(sorted(counts.items()))


def _describe(failed: list[dict]) -> list[str]:
    lines = []
    for node in failed:
        lines.append(f"  {node['resource_type']} {node['name']} ({node['unique_id']}): {node['status']}")
        if node["message"]:
            lines.extend(f"      {line}" for line in node["message"].splitlines()[:6])
        if node["file"]:
            lines.append(f"      defined in: {node['file']}")
        if node["compiled"]:
            lines.append(f"      compiled SQL: {node['compiled']}")
    return lines


def daily_stage(
    plan: dict,
    *,
    log_dir: Path,
    connection_url: str | None = None,
    settings: Settings | None = None,
    base_url: str | None = None,
    full_refresh: bool = False,
) -> dict:
    """crm_transform's dbt stage: source freshness, then one ``dbt build`` of the project
    (``full_refresh``: every incremental mart rebuilt from all history).

    One dbt process for every node (dbt starts once, ~2 s, instead of once per node). The
    build is the one ``crm dbt build --date`` runs: seeds, snapshots, models and every data
    test, source tests included; unit tests are CI's. ``plan`` is ``plan_build``'s (the run
    date and test window). dbt's log and the run's artefacts (run_results.json,
    sources.json) go to ``log_dir``; the build's table lineage to OpenLineage
    (``crm.lineage``). Stale sources do not stop the build (the marts are built from what
    landed), but fail the stage with the build's failures.

    Raises :class:`DbtStageError` naming every failed node, its message, its compiled SQL
    and the log; returns the counts by status otherwise.
    """
    import shutil

    from dbt.cli.main import dbtRunner

    settings = settings or get_settings()
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dbt_env(settings, base_url, connection_url=connection_url) | {
        "CRM_RUN_DATE": plan.get("run_date") or "",
        "CRM_TEST_WINDOW_START": plan.get("test_window_start") or "",
        "DBT_LOG_PATH": str(log_dir),
    }
    target = Path(env["DBT_TARGET_PATH"])
    where = [f"dbt log: {log_dir / 'dbt.log'}"]
    failed: list[dict] = []
    errors: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    steps = (
        ("source freshness", ["source", "freshness"], "sources.json"),
        (
            "build",
            ["build", "--exclude-resource-type", "unit_test", *(["--full-refresh"] if full_refresh else [])],
            "run_results.json",
        ),
    )
    with environment(env):
        for step, args, artefact in steps:
            # Remove the previous artefact: a step that dies before writing its own must not
            # be judged by an older run's.
            (target / artefact).unlink(missing_ok=True)
            result = dbtRunner().invoke([*args, "--project-dir", env["DBT_PROJECT_DIR"]])
            if (target / artefact).exists():
                kept = log_dir / artefact
                shutil.copyfile(target / artefact, kept)
                where.append(f"{step} results: {kept}")
                counts[step] = _summary(kept)
                failed += _failed_nodes(kept, target, Path(env["DBT_PROJECT_DIR"]))
            if result.exception is not None:
                errors.append(f"dbt {step}: {type(result.exception).__name__}: {result.exception}")
            elif not result.success and not (target / artefact).exists():
                errors.append(f"dbt {step} failed without writing {artefact}")
        # Table lineage of what the build ran (OpenLineage, parent: this Airflow task run);
        # read from the artefacts it just wrote, never failing the stage.
        from crm.lineage import emit_dbt_lineage

        emit_dbt_lineage(Path(env["DBT_PROJECT_DIR"]), target, success=result.success)
    log.info("dbt stage for %s: %s", plan.get("run_date") or "the last day loaded", counts)
    if failed or errors:
        head = f"crm_transform dbt stage for {plan.get('run_date') or 'the last day loaded'} failed"
        if failed:
            head += f": {len(failed)} node(s) failed"
        message = "\n".join([head, *_describe(failed), *errors, *where])
        raise DbtStageError(message, failed, data_failure=bool(failed) and not errors)
    return counts
