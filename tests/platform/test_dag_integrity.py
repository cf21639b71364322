"""Every DAG file imports cleanly and follows the house rules for DAGs (parse time is
measured by `make bench`, section dags, not asserted here).

Parsing happens in a subprocess with its own AIRFLOW_HOME (Airflow reads its configuration
once, at import). Like Airflow's DAG processor, that process imports Airflow once and forks
a fresh child per file, so each file's time includes everything the file itself imports.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crm.settings import REPO_ROOT, get_settings

DAGS_FOLDER = REPO_ROOT / "dags"
DAG_FILES = sorted(p for p in DAGS_FOLDER.glob("*.py") if not p.name.startswith("_"))

# Imported at module level they cost parse time (or open connections) every few seconds.
HEAVY_MODULES = {
    "pandas", "numpy", "sklearn", "scipy", "great_expectations", "psycopg", "psycopg2",
    "sqlalchemy", "dbt", "requests", "httpx", "urllib3", "boto3",
}  # fmt: skip
# Calls that reach a database, the network or the clock while the file is parsed.
PARSE_TIME_CALLS = {
    "connect", "get_conn", "get_connection", "get_records", "get_first", "execute", "urlopen",
    "ensure_ready", "ensure_manifest", "run_dbt", "Variable.get", "datetime.now", "datetime.utcnow",
    "date.today", "subprocess.run", "subprocess.check_output", "os.system",
}  # fmt: skip
NETWORK_MODULES = {"requests", "httpx", "urllib3"}

PROBE = r"""
import inspect, json, os, sys, time
from airflow.models import DagBag

# Airflow 3.3 dropped include_examples (examples come only from [core] load_examples, off here).
OPTIONS = {"include_examples": False} if "include_examples" in inspect.signature(DagBag).parameters else {}

def describe(path):
    started = time.perf_counter()
    bag = DagBag(dag_folder=path, **OPTIONS)
    seconds = time.perf_counter() - started
    dags = {}
    for dag_id, dag in bag.dags.items():
        dags[dag_id] = {
            "owners": sorted({t.owner for t in dag.tasks}),
            "default_retries": (dag.default_args or {}).get("retries", 0),
            "retries": {t.task_id: t.retries for t in dag.tasks
                        if not any(c.__name__ == "BaseSensorOperator" for c in type(t).__mro__)},
            "tags": sorted(dag.tags),
            "doc_md": bool((dag.doc_md or "").strip()),
            "tasks": len(dag.tasks),
        }
    return {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "seconds": seconds, "dags": dags}

results = {}
for path in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a fresh child per file, as the DAG processor does
        os.close(read)
        try:
            out = describe(path)
        except BaseException as err:
            out = {"errors": {path: repr(err)}, "seconds": 0.0, "dags": {}}
        with os.fdopen(write, "w") as fh:
            fh.write(json.dumps(out))
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        results[path] = json.loads(fh.read() or '{"errors": {"?": "child died"}, "seconds": 0, "dags": {}}')
    os.waitpid(pid, 0)
print("RESULT" + json.dumps(results))
"""


def needs_manifest(path: Path) -> bool:
    return "manifest" in path.read_text().lower()


@pytest.fixture(scope="module")
def manifest_problem() -> str | None:
    """Make sure the dbt manifest exists for the DAGs rendered from it; say why if it can't."""
    if not any(needs_manifest(p) for p in DAG_FILES):
        return None
    if importlib.util.find_spec("crm.transform") is None:
        return "crm.transform (ensure_manifest) does not exist yet: cannot build the dbt manifest"
    from crm import transform

    if not hasattr(transform, "ensure_manifest"):
        return "crm.transform has no ensure_manifest(): cannot build the dbt manifest"
    transform.ensure_manifest()  # a dbt parse error is a real failure, not a skip
    return None


@pytest.fixture(scope="module")
def parsed(tmp_path_factory, manifest_problem) -> dict[str, dict]:
    home = tmp_path_factory.mktemp("airflow_home")
    files = [p for p in DAG_FILES if not (manifest_problem and needs_manifest(p))]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "CRM_", "WAREHOUSE_URL"))
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos"),
            "GX_ANALYTICS_ENABLED": "False",
            "SCARF_ANALYTICS": "false",
            "DO_NOT_TRACK": "1",
            "CRM_HOME": str(home / "crm"),
            "CRM_DBT_TARGET_DIR": str(get_settings().dbt_target),  # where ensure_manifest wrote
            "PYTHONPATH": os.pathsep.join((str(REPO_ROOT), str(REPO_ROOT / "include"))),
        }
    )
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, files)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, f"the DagBag probe failed:\n{proc.stderr[-3000:]}"
    return {Path(path).name: result for path, result in json.loads(line[len("RESULT") :]).items()}


@pytest.fixture(params=DAG_FILES, ids=lambda p: p.name)
def dag_file(request, parsed, manifest_problem) -> dict:
    path: Path = request.param
    if manifest_problem and needs_manifest(path):
        pytest.skip(f"{path.name}: {manifest_problem}")
    return parsed[path.name]


def test_dags_folder_has_dag_files():
    assert DAG_FILES, f"no DAG files in {DAGS_FOLDER}"


def test_dag_file_imports_without_errors(dag_file):
    assert dag_file["errors"] == {}, "\n".join(dag_file["errors"].values())
    assert dag_file["dags"], "the file defines no DAG"


def test_dags_have_owner_tags_retries_and_docs(dag_file):
    assert dag_file["dags"], "the file does not import: see test_dag_file_imports_without_errors"
    for dag_id, dag in dag_file["dags"].items():
        assert dag["tasks"] > 0, f"{dag_id} has no tasks"
        assert "airflow" not in dag["owners"], f"{dag_id}: tasks with the default owner 'airflow'"
        assert dag["tags"], f"{dag_id} has no tags"
        assert dag["doc_md"], f"{dag_id} has no doc_md (use doc_md=__doc__)"
        assert dag["default_retries"] >= 1, f"{dag_id}: default_args retries < 1"
        no_retry = sorted(task for task, retries in dag["retries"].items() if retries < 1)
        assert not no_retry, f"{dag_id}: tasks without retries {no_retry}"


# --- static checks: what runs when the file is parsed ------------------------------------


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _is_task(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Task bodies run on workers, not at parse: @task, @task.sensor(...), ..."""
    for deco in fn.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if _dotted(target).split(".")[0] == "task":
            return True
    return False


def parse_time_problems(source: str) -> list[str]:
    """Heavy imports and DB / network / clock calls in code that runs when the file is parsed.

    That is everything but task bodies: module level, the @dag function, helpers building
    task groups.
    """
    problems: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _is_task(node):
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            problems.extend(
                f"line {node.lineno}: imports {n} at parse time"
                for n in names
                if n.split(".")[0] in HEAVY_MODULES
            )
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            last_two = ".".join(name.split(".")[-2:])
            if (
                name.split(".")[-1] in PARSE_TIME_CALLS
                or last_two in PARSE_TIME_CALLS
                or name.split(".")[0] in NETWORK_MODULES
            ):
                problems.append(f"line {node.lineno}: calls {name}() at parse time")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return problems


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_nothing_heavy_or_connected_runs_at_parse_time(path):
    assert parse_time_problems(path.read_text()) == []


def test_parse_time_check_catches_what_it_should():
    bad = (
        "import pandas as pd\n"
        "import requests\n"
        "from airflow.sdk import Variable, dag, task\n"
        "from crm.warehouse import connect\n"
        "CONN = connect('crm_loader')\n"
        "SETTING = Variable.get('x')\n"
        "@dag(schedule=None)\n"
        "def d():\n"
        "    requests.get('http://example.invalid')\n"
        "    @task\n"
        "    def fine():\n"
        "        import sklearn\n"
        "        return connect().execute('select 1')\n"
        "    fine()\n"
    )
    problems = parse_time_problems(bad)
    assert [p.split(":")[0] for p in problems] == ["line 1", "line 2", "line 5", "line 6", "line 9"], problems
    assert parse_time_problems("from airflow.sdk import dag\nimport datetime as dt\n") == []
