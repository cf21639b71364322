"""Airflow's metadata migration keeps its screenful of lines in a log file."""

from __future__ import annotations

from crm.settings import Settings


def test_the_metadata_migration_writes_its_lines_to_a_log_not_the_screen(tmp_path, capfd):
    from crm.airflow_env import ensure_metadata_db

    settings = Settings(home=tmp_path)
    ensure_metadata_db(settings)
    out, err = capfd.readouterr()
    assert "migration" not in (out + err).lower(), (out + err)[-500:]
    log = (tmp_path / "logs" / "airflow-db-migrate.log").read_text()
    assert "Database migration done" in log
    assert (settings.airflow_home / ".db-migrated").exists()
    ensure_metadata_db(settings)  # once per Airflow home: the second call does nothing
    assert (tmp_path / "logs" / "airflow-db-migrate.log").read_text() == log
