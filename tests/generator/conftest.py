"""One generated bank per session, shared by the generator's tests (the costly part)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from crm.generator import generate

START = dt.date(2026, 1, 1)
BANK_CUSTOMERS = 2000
BANK_DAYS = 120


@pytest.fixture(scope="session")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 customers over 120 days: enough for churn precursors and distributions."""
    out = tmp_path_factory.mktemp("bank")
    generate(
        customers=BANK_CUSTOMERS,
        start=START,
        days=BANK_DAYS,
        seed=21,
        out=out / "landing",
        truth=out / "truth",
    )
    return out


@pytest.fixture(scope="session")
def faulted_bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small bank with every fault kind (row kinds at 1 % each, one file of each file kind)."""
    out = tmp_path_factory.mktemp("faulted")
    generate(
        customers=400,
        start=START,
        days=6,
        seed=9,
        out=out / "landing",
        truth=out / "truth",
        faults="rate=0.01",
    )
    return out
