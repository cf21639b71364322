"""OpenLineage lineage of a daily run under real Airflow (`airflow dags test`) and real dbt:
crm_ingest's load tasks and crm_transform's dbt stage write events under $CRM_HOME/lineage/,
and the graph answers "which raw tables fed marts.customer_360 today"."""

from __future__ import annotations

import datetime as dt
import json
import shutil

from crm.feeds import load_registry
from crm.lineage import events_dir, read_events, table_dataset, upstream_of, written_by
from crm.settings import get_settings

from .bank import DAYS, START


def raw_ancestors(model: str) -> set[str]:
    """The raw tables (source names) a model is built from, per dbt's own manifest."""
    manifest = json.loads((get_settings().dbt_target / "manifest.json").read_text())
    nodes = manifest["nodes"] | manifest["sources"]
    todo, seen = [f"model.crm.{model}"], set()
    while todo:
        for parent in nodes[todo.pop()].get("depends_on", {}).get("nodes", []):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return {
        manifest["sources"][s]["name"]
        for s in seen
        if s in manifest["sources"] and manifest["sources"][s]["schema"] == "raw"
    }


def test_the_days_raw_tables_are_upstream_of_customer_360_with_the_ingestion_names(built, monkeypatch):
    from crm.orchestrate import run_dag

    monkeypatch.setenv("CRM_LANDING_DIR", str(built))
    get_settings.cache_clear()
    shutil.rmtree(events_dir(), ignore_errors=True)
    day = START + dt.timedelta(days=DAYS - 1)

    ingest = run_dag("crm_ingest", day)
    assert ingest.ok, ingest.failure_excerpt()
    transform = run_dag("crm_transform", day)

    events = read_events()
    feeds = [feed.name for feed in load_registry().load_order()]
    # Each load task's event names its raw table as OpenLineage's PostgreSQL naming of the
    # warehouse the test runs on (its host, port and database).
    ingested = set()
    for feed in feeds:
        outputs = written_by(events, f"crm_ingest.{feed}.load")
        assert outputs == {table_dataset("raw", feed)}, feed
        ingested |= outputs
    namespace, name = table_dataset("marts", "customer_360")
    assert namespace.startswith("postgres://127.0.0.1:") and name.endswith(".marts.customer_360")

    upstream = upstream_of((namespace, name), events)

    fed = {d for d in upstream if d[1].split(".")[1] == "raw"}
    expected = {table_dataset("raw", source) for source in raw_ancestors("customer_360")}
    assert expected and fed == expected, "dbt's inputs of the mart are the ingested raw tables"
    assert fed <= ingested, "the same dataset names on both sides of the graph"
    assert any(d[1].split(".")[1] == "staging" for d in upstream), "the walk went through staging"

    # The dbt events hang under the dbt_build task run: parents join.
    task_runs = {
        e["run"]["runId"]
        for e in events
        if e["job"]["name"] == "crm_transform.dbt_build" and e["eventType"] == "COMPLETE"
    }
    dbt_runs = [e for e in events if e["job"]["name"].startswith("dbt-run-")]
    assert task_runs and dbt_runs, transform.failure_excerpt()
    assert {e["run"]["facets"]["parent"]["run"]["runId"] for e in dbt_runs} <= task_runs
    mart_events = [
        e
        for e in events
        if any((o["namespace"], o["name"]) == (namespace, name) for o in e.get("outputs") or [])
    ]
    assert {e["run"]["facets"]["parent"]["run"]["runId"] for e in mart_events} <= {
        e["run"]["runId"] for e in dbt_runs
    }
    # Every task of the day ran to the end (a run-level failure after them is not lineage's).
    failed = [e["job"]["name"] for e in events if e["eventType"] == "FAIL" and "." in e["job"]["name"]]
    assert not failed, transform.failure_excerpt()


def test_the_dbt_events_go_to_the_transport_and_a_broken_one_fails_nothing(built, tmp_path, monkeypatch):
    """The same emitter outside a task (no parent): every event reaches the file transport;
    a transport that cannot write loses the events but raises nothing."""
    from crm.lineage import emit_dbt_lineage
    from crm.transform import dbt_env, run_dbt

    settings = get_settings()
    run_dbt(["run", "--select", "customer_360"])  # the artefacts of a run to read
    for key, value in dbt_env(settings).items():  # the profile the build ran with
        monkeypatch.setenv(key, value)
    good = tmp_path / "lineage"
    transport = {"type": "file", "log_file_path": str(good / "event")}  # a file per event
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__DISABLED", "False")
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps(transport))
    good.mkdir()

    sent = emit_dbt_lineage(settings.dbt_project_dir, settings.dbt_target, success=True)

    events = read_events(good)
    assert sent == len(events) > 2
    assert [events[0]["eventType"], events[-1]["eventType"]] == ["START", "COMPLETE"]
    built_models = {(d["namespace"], d["name"]) for e in events for d in e.get("outputs") or []}
    assert built_models == {table_dataset("marts", "customer_360")}
    inputs = {d["name"].split(".", 1)[1] for e in events for d in e.get("inputs") or []}
    manifest = json.loads((settings.dbt_target / "manifest.json").read_text())
    known = manifest["nodes"] | manifest["sources"]
    parents = [known[p] for p in manifest["nodes"]["model.crm.customer_360"]["depends_on"]["nodes"]]
    assert inputs == {f"{n['schema']}.{n.get('identifier') or n.get('alias') or n['name']}" for n in parents}

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    transport["log_file_path"] = str(blocker / "event")
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps(transport))
    assert emit_dbt_lineage(settings.dbt_project_dir, settings.dbt_target, success=True) == 0
