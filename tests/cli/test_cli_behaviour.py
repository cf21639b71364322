"""`crm` behaves like a command line: fast help, --version, usage errors (exit 2, no traceback)
for bad days, one line when dbt fails, and `airflow dags test`'s exit code as its verdict."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from crm.cli import STAGES, app, load_stage
from crm.dates import days_from_options, parse_day

runner = CliRunner()
CRM = str(Path(sys.executable).with_name("crm"))


@pytest.fixture
def crm(tmp_path):
    """The installed console script, as a user runs it (a traceback would reach its output),
    with a CRM_HOME of its own: a command that wrongly went ahead would not touch var/."""
    env = {**os.environ, "CRM_HOME": str(tmp_path / "home")}
    env.pop("WAREHOUSE_URL", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([CRM, *args], capture_output=True, text=True, check=False, env=env, timeout=120)

    return run


@pytest.mark.parametrize("heavy", ["pandas", "airflow", "dbt", "psycopg"])
def test_importing_the_cli_imports_no_heavy_stack(heavy):
    code = f"import sys, crm.cli; assert {heavy!r} not in sys.modules, 'crm.cli imports {heavy}'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-800:]


def test_help_lists_every_stage_without_importing_it():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from crm.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "for name in ('generate', 'ingest', 'dbt', 'warehouse', 'run'):\n"
        "    assert name in result.output, name\n"
        "heavy = [m for m in ('pandas', 'airflow', 'dbt', 'psycopg') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-800:]


@pytest.mark.parametrize("name", list(STAGES))
def test_the_listed_help_of_a_stage_is_its_own(name):
    """`crm --help` shows STAGES' text without importing the stage: it must say what the stage says."""
    command = load_stage(name)
    assert command.name == name
    assert STAGES[name].help == (command.help or "").strip().splitlines()[0]


def test_version_prints_the_package_version(crm):
    result = crm("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"crm-analytics {importlib.metadata.version('crm-analytics')}"


@pytest.mark.parametrize(
    "args",
    [
        ["ingest", "--date", "notadate"],
        ["ingest", "--from", "2026-01-05", "--to", "2026-01-01"],
        ["ingest", "--from", "2026-01-01"],
        ["ingest", "--to", "2026-01-01"],
        ["ingest", "--date", "2026-01-01", "--from", "2026-01-01", "--to", "2026-01-02"],
        ["ingest"],
        ["run", "--date", "notadate"],
        ["run", "--from", "2026-01-05", "--to", "2026-01-01"],
        ["dbt", "build", "--date", "notadate"],
        ["generate", "--start", "notadate"],
        ["demo", "--start", "notadate"],
    ],
    ids=" ".join,
)
def test_bad_days_are_usage_errors_without_a_traceback(crm, args):
    result = crm(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "Invalid value" in result.stderr


def test_to_before_from_names_both_days():
    result = runner.invoke(app, ["ingest", "--from", "2026-01-05", "--to", "2026-01-01"])
    assert result.exit_code == 2
    assert "2026-01-01 is before --from 2026-01-05" in result.output


def test_days_from_options():
    d1, d3 = dt.date(2026, 1, 1), dt.date(2026, 1, 3)
    assert days_from_options(d1, None, None) == [d1]
    assert days_from_options(None, d1, d3) == [d1, dt.date(2026, 1, 2), d3]
    assert days_from_options(None, d3, d3) == [d3]
    for bad in [(None, d3, d1), (d1, d1, d3), (d1, None, d3), (None, d1, None), (None, None, None)]:
        with pytest.raises(typer.BadParameter):
            days_from_options(*bad)


def test_parse_day():
    assert parse_day("2026-02-28") == dt.date(2026, 2, 28)
    assert parse_day(dt.date(2026, 2, 28)) == dt.date(2026, 2, 28)  # a default given as a date
    with pytest.raises(typer.BadParameter, match="is not a date"):
        parse_day("2026-02-30")


def test_a_failed_dbt_build_is_one_line_and_exit_1(monkeypatch):
    import crm.transform
    import crm.warehouse

    def failing_build(*_args, **_kwargs):
        raise RuntimeError("dbt build failed: Database Error in model dim_customer\n  relation missing")

    monkeypatch.setattr(crm.warehouse, "ensure_ready", lambda *a, **k: None)
    monkeypatch.setattr(crm.transform, "build", failing_build)
    result = runner.invoke(app, ["dbt", "build", "--date", "2026-01-01"])
    assert result.exit_code == 1
    assert not isinstance(result.exception, RuntimeError)  # handled, not raised to the user
    assert result.output.strip() == "crm dbt build: dbt build failed: Database Error in model dim_customer"


@pytest.mark.parametrize(
    ("returncode", "output", "ok"),
    [
        (1, "DagRun failed\n", False),  # what airflow 3 prints; no "state=failed" in it
        (0, "task log: previous attempt state=failed, retried\nDagRunState.SUCCESS\n", True),
    ],
)
def test_run_dag_judges_airflow_dags_test_by_its_exit_code(monkeypatch, tmp_path, returncode, output, ok):
    import crm.airflow_env
    import crm.orchestrate

    monkeypatch.setattr(crm.airflow_env, "ensure_metadata_db", lambda *a, **k: None)
    monkeypatch.setattr(crm.airflow_env, "airflow_environ", lambda *a, **k: {})
    monkeypatch.setattr(
        crm.orchestrate.subprocess,
        "run",
        lambda args, **_: subprocess.CompletedProcess(args, returncode, stdout=output),
    )
    outcome = crm.orchestrate.run_dag("crm_ingest", dt.date(2026, 1, 1), SimpleNamespace(home=tmp_path))
    assert outcome.ok is ok
    assert outcome.log.read_text() == output
