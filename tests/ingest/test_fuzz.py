"""Mutated files never crash the loader, and both load paths agree on them.

Each case takes a small clean file (CSV with ';' or ',', or JSON Lines) and damages a few
of its lines (a CSV header, too) with tokens that have broken loaders before: NUL bytes, carriage returns,
stray quotes and delimiters, backslash escapes, JSON's \\u0000 and lone surrogates,
numbers out of range, impossible dates, Unicode line separators. The file must then be
refused as a whole (FileRefused, naming its rule) or load with every line either in raw
or in quarantine, and the row-by-row path must give the same rows and the same quarantine
as the clean path. Seeds are fixed; ``CRM_FUZZ_CASES=2000`` runs more of them.
"""

from __future__ import annotations

import os
import random

import pytest

from crm.ingest import load_file
from crm.ingest.loader import FileRefused

from .test_clean_copy import CLEAN, CUSTOMERS, DAY, SESSIONS, VISITS, customer_row, rows_of, session
from .test_loader import visit_row, write_csv

TOKENS = [
    "\x00", "\r", "\n", "\t", '"', "'", ";", ",", "\\", "\\N", "\\.", "", " ", "\ufeff", "é", "中",
    "\x1b", "\\u0000", "\\ud800", "{", "}", "[", "]", ":", "null", "NaN", "-", "1e400",
    "9999999999999999999999", "2026-13-45", "\u2028", "\x85", "\x7f", "\xa0",
]  # fmt: skip
CASES = int(os.environ.get("CRM_FUZZ_CASES", "45"))


def damage(rng: random.Random, text: str) -> str:
    """``text`` with 1-4 of its lines (a CSV header, too) damaged: a token inserted, a span
    replaced by one, or the line cut short."""
    lines = text.split("\n")
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(0, len(lines) - 1)
        line, pos, token = lines[i], rng.randint(0, len(lines[i])), rng.choice(TOKENS)
        roll = rng.random()
        if roll < 0.5:
            lines[i] = line[:pos] + token + line[pos:]
        elif roll < 0.8:
            lines[i] = line[:pos] + token + line[pos + rng.randint(1, 5) :]
        else:
            lines[i] = line[:pos]
    return "\n".join(lines)


def quarantine_of(db, feed: str) -> list[tuple]:
    return db.execute(
        f"select _line_number, reason, column_name, raw_line from quarantine.{feed} order by _line_number"
    ).fetchall()


@pytest.mark.parametrize("seed", range(CASES))
def test_a_damaged_file_loads_or_is_refused_and_both_paths_agree(tmp_path, loader_conn, db, seed):
    customers = [customer_row(i, **CLEAN) for i in range(1, 8)]
    load_file(
        loader_conn, CUSTOMERS, DAY, write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, customers[:3])
    )
    feed, name, clean = [
        (VISITS, "v.csv", lambda: write_csv(
            tmp_path / "v0.csv", VISITS.column_names,
            [visit_row(ticket_id=f"Q{n:012d}") for n in range(1, 8)], delimiter=";",
        ).read_text(encoding="utf-8")),
        (CUSTOMERS, "c2.csv", lambda: write_csv(
            tmp_path / "c0.csv", CUSTOMERS.column_names, customers,
        ).read_text(encoding="utf-8")),
        (SESSIONS, "s.jsonl", lambda: "".join(session(i) for i in range(1, 8))),
    ][seed % 3]  # fmt: skip
    path = tmp_path / name
    path.write_bytes(damage(random.Random(seed), clean()).encode("utf-8", errors="surrogatepass"))

    try:
        first = load_file(loader_conn, feed, DAY, path, force=True)
    except FileRefused as refused:
        assert refused.rule and str(path) in str(refused)
        return
    assert first.rows_in_file == first.rows_loaded + first.rows_quarantined
    rows, quarantine = rows_of(db, feed.name), quarantine_of(db, feed.name)
    assert len(rows) == first.rows_loaded and len(quarantine) == first.rows_quarantined

    again = load_file(loader_conn, feed, DAY, path, force=True, clean_copy=False)
    assert (again.rows_loaded, again.rows_quarantined) == (first.rows_loaded, first.rows_quarantined)
    assert rows_of(db, feed.name) == rows
    assert quarantine_of(db, feed.name) == quarantine
