"""A client of a running Airflow's REST API, as the bench and the tests that start one use it.

``crm airflow`` (``airflow standalone``) writes its admin's generated password into its
Airflow home; :func:`api_client` waits for the API server, reads it, and returns an
``httpx`` client of ``/api/v2`` with a bearer token.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    """A TCP port free on the loopback now (for a server started next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], seconds: float, what: str, every: float = 2.0) -> Any:
    """``predicate()``'s first truthy value, polled every ``every`` seconds (errors of a server
    still starting count as not yet); TimeoutError after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if value := predicate():
                return value
        except (httpx.HTTPError, OSError, KeyError, ValueError, StopIteration):
            pass
        time.sleep(every)
    raise TimeoutError(f"timed out after {seconds:.0f}s waiting for {what}")


def api_client(base: str, airflow_home: Path, timeout: float = 60) -> httpx.Client:
    """A client of ``{base}/api/v2`` logged in as the standalone admin, once the server is up."""
    wait_for(lambda: httpx.get(f"{base}/api/v2/monitor/health").status_code == 200, 600, "the API server", 5)
    passwords = airflow_home / "simple_auth_manager_passwords.json.generated"
    user, password = next(
        iter(wait_for(lambda: json.loads(passwords.read_text()), 120, "the password").items())
    )
    token = httpx.post(f"{base}/auth/token", json={"username": user, "password": password}).json()
    return httpx.Client(
        base_url=f"{base}/api/v2",
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=timeout,
    )
