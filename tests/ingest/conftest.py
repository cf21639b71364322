from __future__ import annotations

import psycopg
import pytest

from crm.warehouse import role_url


@pytest.fixture
def loader_conn(warehouse):
    """A connection as the loader role, on a fresh warehouse."""
    with psycopg.connect(role_url("crm_loader")) as conn:
        yield conn
