""".ci/run, the CI entry point: lint, then the tests; and lint runs without a warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from crm.settings import REPO_ROOT

CI_RUN = REPO_ROOT / ".ci" / "run"


def _commands() -> list[str]:
    """The script's command lines, comments and blank lines left out."""
    lines = (line.split("#", 1)[0].strip() for line in CI_RUN.read_text().splitlines())
    return [line for line in lines if line]


def test_ci_runs_make_lint_before_make_test():
    commands = _commands()
    assert commands.count("make lint") == 1, commands
    assert commands.count("make test") == 1, commands
    assert commands.index("make lint") < commands.index("make test"), commands


def test_ci_stops_at_the_first_failure():
    """set -e: a failing `make lint` fails CI before the tests run."""
    commands = _commands()
    assert CI_RUN.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in commands
    assert commands.index("set -euo pipefail") < commands.index("make lint")
    assert os.access(CI_RUN, os.X_OK)


def test_sqlfluff_renders_a_model_without_a_warehouse(tmp_path: Path):
    """.sqlfluff's jinja templater renders a model as dbt parses it: the project's macros
    (run_date -> build_setting, a nested return) and vars, no database connection."""
    sqlfluff = Path(sys.executable).with_name("sqlfluff")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRM_", "DBT_", "WAREHOUSE_"))}
    env["CRM_HOME"] = str(tmp_path)  # nothing of var/ (no warehouse, no secrets)
    model = "dbt_project/models/intermediate/customer_activity_window.sql"
    result = subprocess.run(
        [str(sqlfluff), "render", model], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    rendered = result.stdout
    # run_date(): the last loaded day (build_setting returned '' while parsing).
    assert "select coalesce(max(business_date), current_date) from audit_load_log" in rendered
    # var('activity_window_days') from dbt_project.yml (90): window_start = run date - 89.
    assert "- 89 as window_start" in rendered
