"""A knob is real or absent: the bank's time zone is set once, feeds declare none."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from crm.dates import BANK_TZ
from crm.feeds import load_registry

ROOT = Path(__file__).resolve().parents[2]


def test_the_bank_time_zone_is_the_dbt_var_and_written_nowhere_else_in_code():
    dbt_vars = yaml.safe_load((ROOT / "dbt_project" / "dbt_project.yml").read_text())["vars"]
    assert BANK_TZ.key == dbt_vars["bank_timezone"]
    found = subprocess.run(
        [
            "git",
            "grep",
            "-n",
            "-F",
            BANK_TZ.key,
            "--",
            "*.py",
            "*.sql",
            "dags",
            "include",
            "dbt_project/macros",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    code = [line for line in found if not line.startswith("tests/")]
    assert code == [], f"the bank's time zone written again: {code}"


def test_no_feed_declares_a_time_zone_nothing_would_read():
    assert all(not hasattr(feed, "timezone") for feed in load_registry().load_order())


def test_the_reporting_currency_is_not_a_setting():
    from crm.settings import Settings

    assert "reporting_currency" not in Settings.model_fields
