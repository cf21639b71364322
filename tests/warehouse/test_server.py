"""The embedded warehouse's lifecycle: persistence across restarts and crash recovery."""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest

from crm.settings import Settings
from crm.warehouse import EmbeddedWarehouse, ensure_ready, with_database
from tests.conftest import _free_port


@pytest.fixture
def own_server(tmp_path_factory):
    settings = Settings(home=tmp_path_factory.mktemp("wh"), pg_port=_free_port(), warehouse_url=None)
    server = EmbeddedWarehouse(settings)
    yield server, settings
    server.stop()


def test_stop_and_start_keeps_the_data(own_server):
    server, settings = own_server
    ensure_ready(settings)
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("create table raw.keepme (x int)")
        conn.execute("insert into raw.keepme values (42)")
    assert not server.stop().running
    assert server.start().running
    with psycopg.connect(server.url()) as conn:
        assert conn.execute("select x from raw.keepme").fetchone() == (42,)


def test_start_recovers_after_kill_9(own_server):
    server, settings = own_server
    ensure_ready(settings)
    pid = server.status().pid
    assert pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.status().running and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not server.status().running, "the killed postmaster still looks alive"
    assert (settings.pgdata / "postmaster.pid").exists(), "a kill -9 leaves a stale pid file"
    assert server.start().running
    with psycopg.connect(server.url()) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_server_listens_on_tcp_and_socket(own_server):
    server, settings = own_server
    ensure_ready(settings)
    assert server.url().startswith("postgresql://crm_owner:")
    assert "@127.0.0.1:" in server.url()
    with psycopg.connect(server.socket_url()) as conn:
        assert conn.execute("select current_user").fetchone() == ("crm_owner",)


def test_external_warehouse_url_starts_nothing_locally(pg_server, tmp_path):
    url = with_database(pg_server.url(), "postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("drop database if exists ext_target with (force)")
        conn.execute("create database ext_target")
    target = with_database(pg_server.url(), "ext_target")
    settings = Settings(home=tmp_path / "elsewhere", warehouse_url=target, pg_port=_free_port())
    assert ensure_ready(settings) == target
    assert not (tmp_path / "elsewhere" / "pgdata").exists(), "no local server may be initialised"
    with psycopg.connect(target) as conn:
        schemas = {r[0] for r in conn.execute("select nspname from pg_namespace")}
    assert {"raw", "quarantine", "audit", "staging", "intermediate", "marts", "ml", "dq"} <= schemas
