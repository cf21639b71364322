"""OpenLineage lineage of the daily run: raw tables (crm_ingest) -> dbt models -> marts.

Airflow's OpenLineage provider emits an event per task run; a load task's output is its
outlet asset (``Feed.asset_uri``). The dbt stage runs one in-process ``dbt build``, so no
listener sees its models: :func:`emit_dbt_lineage` turns the build's ``manifest.json`` and
``run_results.json`` into table-level events with ``openlineage-dbt``'s own processor, the
Airflow task run as their parent, through the same client and transport as the provider.

Both sides must name a table alike or the graph does not join: OpenLineage's PostgreSQL
naming, namespace ``postgres://<host>:<port>`` and name ``<database>.<schema>.<table>``,
taken from the warehouse connection itself (:func:`warehouse_location`), which is also
what dbt's profile is built from (``crm.transform.dbt_env``).

By default events go to files under ``$CRM_HOME/lineage/`` (offline); the provider's
``AIRFLOW__OPENLINEAGE__TRANSPORT`` switches to HTTP (Marquez), see ``docs/lineage.md``.
Lineage is a by-product: a failure to emit is logged and never fails a task.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict, deque
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from crm.settings import Settings, get_settings, private_dir

log = logging.getLogger(__name__)

# The Airflow job namespace of the platform's events (and of the dbt events under them).
JOB_NAMESPACE = "crm"


# --- dataset names -------------------------------------------------------------------


def warehouse_location(settings: Settings | None = None) -> tuple[str, int, str]:
    """Host, port and database of the warehouse connection (no password read or checked:
    DAG files call this while being parsed)."""
    settings = settings or get_settings()
    # The owner's URL where it is known (crm itself); the address without credentials that
    # Airflow's processes get instead (CRM_WAREHOUSE_ADDRESS): both name the same database.
    address = settings.warehouse_url or settings.warehouse_address
    if address:
        url = urlsplit(address)
        return url.hostname or "localhost", url.port or 5432, url.path.lstrip("/") or settings.pg_database
    return "127.0.0.1", settings.pg_port, settings.pg_database  # the embedded warehouse


def dataset_namespace(settings: Settings | None = None) -> str:
    host, port, _ = warehouse_location(settings)
    return f"postgres://{host}:{port}"


def table_asset_uri(schema: str, table: str, settings: Settings | None = None) -> str:
    """Airflow asset URI of a warehouse table (the PostgreSQL provider's AIP-60 form): the
    provider turns it into namespace ``postgres://host:port`` and name ``db.schema.table``,
    the names ``openlineage-dbt`` gives the same table."""
    host, port, database = warehouse_location(settings)
    return f"postgres://{host}:{port}/{database}/{schema}/{table}"


def table_dataset(schema: str, table: str, settings: Settings | None = None) -> tuple[str, str]:
    """(namespace, name) of a warehouse table in OpenLineage."""
    _, _, database = warehouse_location(settings)
    return dataset_namespace(settings), f"{database}.{schema}.{table}"


# --- configuration -------------------------------------------------------------------


def events_dir(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).home / "lineage"


def file_transport(settings: Settings | None = None) -> dict:
    """The default transport: one JSON file per event under :func:`events_dir` (one file
    each, so concurrent task processes never interleave writes in one file). Through fsspec's
    local filesystem with ``auto_mkdir``: the folder is made on the first event (a fresh
    docker volume has none)."""
    return {
        "type": "file",
        "log_file_path": str(events_dir(settings) / "event"),
        "append": False,
        "filesystem": "fsspec.implementations.local.LocalFileSystem",
        "fs_kwargs": {"auto_mkdir": True},
    }


def airflow_settings(settings: Settings | None = None) -> dict[str, str]:
    """The provider's settings the project sets (``crm.airflow_env``); a transport already in
    the environment (``AIRFLOW__OPENLINEAGE__TRANSPORT``) is the caller's to keep."""
    private_dir(events_dir(settings))
    return {
        "AIRFLOW__OPENLINEAGE__DISABLED": "False",
        "AIRFLOW__OPENLINEAGE__NAMESPACE": JOB_NAMESPACE,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(file_transport(settings)),
        # Table lineage is the point; the tasks' Python source in every event is not.
        "AIRFLOW__OPENLINEAGE__EMISSION_POLICY": json.dumps(
            [{"scope": {}, "controls": {"include_source_code": False}}]
        ),
        # Emit from a thread instead of a forked process per task event: cheaper, and bounded
        # by execution_timeout either way.
        "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
        "AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT": "5",
    }


# --- the dbt stage -------------------------------------------------------------------


def _airflow_parent():
    """ParentRunMetadata of the running Airflow task (the provider's own ids, so the dbt
    events join its task events), or None outside a task."""
    from openlineage.common.provider.dbt.facets import ParentRunMetadata

    try:
        from airflow.providers.openlineage.plugins import macros
        from airflow.sdk import get_current_context

        ti = get_current_context()["ti"]
    except Exception:  # not in a task (crm dbt, tests of the stage itself)
        return None
    return ParentRunMetadata(
        run_id=macros.lineage_run_id(ti),
        job_name=macros.lineage_job_name(ti),
        job_namespace=macros.lineage_job_namespace(),
        root_parent_run_id=macros.lineage_root_run_id(ti),
        root_parent_job_name=macros.lineage_root_job_name(ti),
        root_parent_job_namespace=macros.lineage_root_job_namespace(ti),
    )


def _client():
    """The provider's client (its transport settings), or None when lineage is disabled."""
    from airflow.providers.openlineage import conf
    from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter

    if conf.is_disabled():
        return None
    return OpenLineageAdapter().get_or_create_openlineage_client()


def emit_dbt_lineage(project_dir: Path, target_path: Path, *, success: bool) -> int:
    """Emit the events of the dbt build whose artefacts are in ``target_path``: a run of the
    dbt job (child of the Airflow task run) and, under it, one run per model, snapshot and
    seed built with its input and output tables. Returns the events emitted; never raises."""
    try:
        return _emit_dbt_lineage(Path(project_dir), Path(target_path), success=success)
    except Exception:
        log.warning("OpenLineage: dbt lineage not emitted (the build is unaffected)", exc_info=True)
        return 0


def _emit_dbt_lineage(project_dir: Path, target_path: Path, *, success: bool) -> int:
    from openlineage.common.provider.dbt.facets import ParentRunMetadata
    from openlineage.common.provider.dbt.local import DbtLocalArtifactProcessor
    from openlineage.dbt import PRODUCER, dbt_run_event_end, dbt_run_event_failed, dbt_run_event_start

    client = _client()
    if client is None or not (target_path / "run_results.json").exists():
        return 0
    parent = _airflow_parent()
    processor = DbtLocalArtifactProcessor(
        producer=PRODUCER,
        job_namespace=parent.job_namespace if parent else JOB_NAMESPACE,
        project_dir=str(project_dir),
        target_path=str(target_path),
        skip_errors=True,
        logger=log,
    )
    start = dbt_run_event_start(processor.job_name, processor.job_namespace, parent)
    processor.dbt_run_metadata = ParentRunMetadata(
        run_id=start.run.runId,
        job_name=start.job.name,
        job_namespace=start.job.namespace,
        root_parent_run_id=parent.root_parent_run_id if parent else start.run.runId,
        root_parent_job_name=parent.root_parent_job_name if parent else start.job.name,
        root_parent_job_namespace=parent.root_parent_job_namespace if parent else start.job.namespace,
    )
    nodes = processor.parse().events()
    end = (dbt_run_event_end if success else dbt_run_event_failed)(
        start.run.runId, start.job.namespace, start.job.name, parent
    )
    events = (start, *nodes, end)
    sent = 0
    for event in events:
        try:
            client.emit(event)
        except Exception:
            # A transport that fails once (Marquez down or unreachable) would fail, or time
            # out, for each of the hundreds of events left: drop them instead of waiting.
            log.warning("OpenLineage: %d dbt events dropped", len(events) - sent, exc_info=True)
            break
        sent += 1
    log.info("OpenLineage: %d dbt events emitted (%d nodes)", sent, len(nodes))
    return sent


# --- reading the graph back ----------------------------------------------------------


def read_events(folder: Path | None = None) -> list[dict]:
    """Every event the file transport wrote under ``folder`` (default :func:`events_dir`)."""
    folder = folder or events_dir()
    events = []
    for path in sorted(folder.glob("*.json")):
        for line in path.read_text().splitlines():
            if line.strip():
                events.append(json.loads(line))
    return events


def _key(dataset: dict) -> tuple[str, str]:
    return dataset["namespace"], dataset["name"]


def edges(events: Iterable[dict]) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """Output dataset -> the input datasets of the completed runs that wrote it."""
    upstream: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for event in events:
        if event.get("eventType") != "COMPLETE":
            continue
        inputs = {_key(d) for d in event.get("inputs") or []}
        for out in event.get("outputs") or []:
            upstream[_key(out)] |= inputs - {_key(out)}
    return upstream


def upstream_of(dataset: tuple[str, str], events: Iterable[dict]) -> set[tuple[str, str]]:
    """Every dataset ``dataset`` was (transitively) built from."""
    graph = edges(events)
    seen: set[tuple[str, str]] = set()
    queue = deque([dataset])
    while queue:
        for parent in graph.get(queue.popleft(), ()):
            if parent not in seen:
                seen.add(parent)
                queue.append(parent)
    return seen


def written_by(events: Iterable[dict], job_prefix: str) -> set[tuple[str, str]]:
    """The datasets completed runs of jobs named ``job_prefix...`` wrote."""
    return {
        _key(out)
        for event in events
        if event.get("eventType") == "COMPLETE" and event["job"]["name"].startswith(job_prefix)
        for out in event.get("outputs") or []
    }
