"""How the bank's values become feed records: timestamps, customer ids, zero-padding, chunks.

Shared by every part of :class:`crm.generator.bank.Bank`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pandas as pd


def _ts(day: dt.date, seconds: np.ndarray) -> np.ndarray:
    """Local timestamps 'YYYY-MM-DD HH:MM:SS' for seconds after the day's midnight."""
    base = np.datetime64(day.isoformat(), "s")
    text = np.datetime_as_string(base + seconds.astype("timedelta64[s]")).astype("U19")
    return np.char.replace(text, "T", " ").astype(object) if len(text) else text.astype(object)


def _ts_utc(day: dt.date, seconds: np.ndarray) -> np.ndarray:
    """UTC ISO 8601 ('...Z') for local (UTC+8) seconds after the day's midnight."""
    base = np.datetime64(day.isoformat(), "s") - np.timedelta64(8, "h")
    return np.char.add(np.datetime_as_string(base + seconds.astype("timedelta64[s]")), "Z").astype(object)


def _epoch_ms(day: dt.date, seconds: np.ndarray) -> np.ndarray:
    base = (np.datetime64(day.isoformat(), "s") - np.timedelta64(8, "h")).astype("int64")
    return (base + seconds.astype("int64")) * 1000 + (seconds * 997 % 1000).astype("int64")


def _day_seconds(rng: np.random.Generator, n: int, start: int = 7 * 3600, end: int = 23 * 3600) -> np.ndarray:
    return np.sort(rng.integers(start, end, n)) if n else np.zeros(0, dtype=np.int64)


def _cid(idx: np.ndarray) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64)
    return np.char.add("C", _zfill((idx + 1).astype("U9"), 9)) if len(idx) else np.zeros(0, dtype="U10")


def _cidx(ids) -> np.ndarray:
    arr = np.asarray(ids, dtype="U10")
    return (
        (np.char.lstrip(np.char.lstrip(arr, "C"), "0").astype(np.int64) - 1)
        if len(arr)
        else np.zeros(0, dtype=np.int64)
    )


CHUNK = 200_000  # rows per frame for the per-customer / per-account feeds: bounds memory


def _frames(columns: dict) -> Iterator[pd.DataFrame]:
    """Turn column arrays into DataFrames of at most CHUNK rows (pandas copies strings)."""
    n = max((len(v) for v in columns.values() if not np.isscalar(v)), default=0)
    for lo in range(0, max(n, 1), CHUNK):
        yield pd.DataFrame({k: v if np.isscalar(v) else v[lo : lo + CHUNK] for k, v in columns.items()})


def _chunks(ids: np.ndarray) -> Iterator[np.ndarray]:
    """Fixed-size slices (at least one, possibly empty), so every feed gets a file with a header."""
    for lo in range(0, max(len(ids), 1), CHUNK):
        yield ids[lo : lo + CHUNK]


def _zfill(values: np.ndarray, width: int) -> np.ndarray:
    """np.char.zfill that accepts empty arrays (a day can have no rows for a feed)."""
    return np.char.zfill(values, width) if len(values) else np.zeros(0, dtype=f"U{width}")
