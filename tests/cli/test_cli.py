"""CLI smoke tests: the commands a new user types first."""

from __future__ import annotations

from typer.testing import CliRunner

from crm.cli import app

runner = CliRunner()


def test_help_lists_the_main_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("warehouse", "bi-url", "run", "ingest", "migrate", "airflow"):
        assert command in result.output


def test_warehouse_url_and_bi_url_point_at_the_same_database(warehouse):
    owner = runner.invoke(app, ["warehouse", "url"])
    bi = runner.invoke(app, ["bi-url"])
    assert owner.exit_code == 0 and bi.exit_code == 0
    assert owner.output.strip() == warehouse
    assert bi.output.startswith("postgresql://crm_bi_reader:")
    assert bi.output.strip().rsplit("/", 1)[1] == warehouse.rsplit("/", 1)[1]


def test_warehouse_commands_say_external_when_url_is_set(warehouse):
    result = runner.invoke(app, ["warehouse", "stop"])
    assert result.exit_code == 0
    assert "external" in result.output


def test_run_rejects_a_bad_date():
    result = runner.invoke(app, ["run", "--date", "2026-13-01"])
    assert result.exit_code != 0
    assert "is not a date" in result.output


def test_logging_still_works_after_a_cli_run_closed_its_stderr(capsys):
    import logging

    runner.invoke(app, ["run", "--date", "2026-13-01"])  # the runner's stderr is closed after
    logging.getLogger("crm.test").warning("after the command")
    err = capsys.readouterr().err
    assert "after the command" in err
    assert "Logging error" not in err
