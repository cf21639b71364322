"""The sample bank: realistic daily channel feeds with behaviour, faults and ground truth.

``generate()`` writes ``<out>/<feed>/<YYYY-MM-DD>/<file>`` for every registry feed and
day with its control record ``<file>.control.json`` beside it (data rows, and per money
column of the registry's ``control`` block the sums by currency; see
``crm.generator.faults.control_record``), a manifest per day in ``<out>/_manifests/``, and the ground truth (latent
segments, churn, realised margin, fault ledger) in ``<truth>/`` - a folder the
pipeline never loads. Same seed, same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from crm.feeds import Feed, load_registry
from crm.generator.bank import Bank
from crm.generator.faults import CONTROL_SUFFIX, FAULT_KINDS, HELD, REDELIVERED, FaultInjector
from crm.generator.reference import load_reference

__all__ = ["FAULT_KINDS", "GenerateResult", "deliver_late", "generate"]

log = logging.getLogger(__name__)
MANIFESTS = "_manifests"


@dataclass
class GenerateResult:
    out: Path
    truth: Path
    customers: int
    days: int
    rows: dict[str, int] = field(default_factory=dict)
    files: int = 0
    faults: int = 0


def _write(feed: Feed, frame: pd.DataFrame, path: Path, first: bool) -> None:
    mode = "w" if first else "a"
    if feed.format == "csv":
        frame = frame[feed.column_names]
        frame.to_csv(
            path, mode=mode, sep=feed.delimiter, index=False, header=first, lineterminator="\n", na_rep=""
        )
    else:
        with open(path, mode, encoding="utf-8") as fh:
            if len(frame):
                text = frame[feed.column_names].to_json(orient="records", lines=True, force_ascii=False)
                fh.write(text if text.endswith("\n") else text + "\n")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def generate(
    customers: int,
    start: dt.date,
    days: int,
    seed: int,
    out: Path,
    truth: Path,
    faults: str | None = None,
) -> GenerateResult:
    """Write ``days`` days of every feed for a bank of ``customers`` customers."""
    registry = load_registry()
    feeds = {f.name: f for f in registry.load_order()}
    out, truth = Path(out), Path(truth)
    if customers < 1 or days < 1:
        raise ValueError(f"customers ({customers}) and days ({days}) must be at least 1")
    # A run replaces an earlier run's output, and only that: never a folder it did not write.
    for folder, marker in ((out, MANIFESTS), (truth, "generation.json")):
        if folder.exists() and any(folder.iterdir()) and not (folder / marker).exists():
            raise FileExistsError(
                f"{folder} is not empty and holds no earlier sample bank ({marker} missing); "
                "choose an empty or new folder"
            )
    for folder in (out, truth):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    bank = Bank(load_reference(), seed, start, days, customers)
    all_days = [start + dt.timedelta(days=d) for d in range(days)]
    injector = FaultInjector(faults, seed, out, all_days, list(feeds.values()))
    result = GenerateResult(out, truth, customers, days)
    for d, day in enumerate(all_days):
        started: dict[str, None] = {}  # insertion-ordered: the ledger order must not depend on hashing
        for name, frame in bank.simulate_day(d):
            feed = feeds[name]
            path = out / name / day.isoformat() / feed.file
            if name not in started:
                path.parent.mkdir(parents=True, exist_ok=True)
            _write(feed, frame, path, name not in started)
            started[name] = None
            result.rows[name] = result.rows.get(name, 0) + len(frame)
        # Defects, then the control record the source sends beside every file.
        injector.apply_day(
            day, {feeds[name]: out / name / day.isoformat() / feeds[name].file for name in started}
        )
        _write_manifest(out, day, feeds)
        log.info("generated day=%s customers=%s", day, bank.n)
    result.files = sum(
        1
        for p in out.rglob("*")
        if p.is_file() and p.parent.name != MANIFESTS and not p.name.endswith(CONTROL_SUFFIX)
    )
    customers_truth, margin = bank.truth_frames()
    customers_truth.to_csv(truth / "customers_truth.csv", index=False, lineterminator="\n")
    margin.to_csv(truth / "monthly_margin.csv", index=False, lineterminator="\n")
    bank.consent_truth().to_csv(truth / "consent_changes.csv", index=False, lineterminator="\n")
    with open(truth / "faults.jsonl", "w", encoding="utf-8") as fh:
        for entry in injector.ledger:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
    (truth / "generation.json").write_text(
        json.dumps(
            {
                "customers": customers,
                "start": start.isoformat(),
                "days": days,
                "seed": seed,
                "faults": faults,
                "rows": result.rows,
                "fault_count": len(injector.ledger),
            },
            indent=2,
            sort_keys=True,
        )
    )
    result.faults = len(injector.ledger)
    return result


def _file_entry(out: Path, feed: Feed, path: Path, shown_as: Path, status: str) -> dict:
    with open(path, "rb") as fh:
        lines = sum(1 for _ in fh)
    return {
        "feed": feed.name,
        "file": shown_as.relative_to(out).as_posix(),
        "status": status,
        "rows": max(lines - (1 if feed.format == "csv" else 0), 0),
        "bytes": path.stat().st_size,
        "sha256": _sha256(path),
    }


def _write_manifest(out: Path, day: dt.date, feeds: dict[str, Feed]) -> None:
    """What the day's delivery holds, file by file, in registry load order.

    status: ``delivered``; ``missing`` (no file: the source system never sent it);
    ``held`` (a late partition: waiting in ``_held/``, ``file`` is where it will land);
    ``redelivered`` (a second, identical copy in ``_redelivered/``)."""
    entries = []
    for name, feed in feeds.items():
        rel = Path(name) / day.isoformat() / feed.file
        path, held, again = out / rel, out / HELD / rel, out / REDELIVERED / rel
        if path.exists():
            entries.append(_file_entry(out, feed, path, path, "delivered"))
        elif held.exists():
            entries.append({**_file_entry(out, feed, held, path, "held"), "held_at": (HELD / rel).as_posix()})
        else:
            entries.append(
                {
                    "feed": name,
                    "file": rel.as_posix(),
                    "status": "missing",
                    "rows": 0,
                    "bytes": 0,
                    "sha256": None,
                }
            )
        if again.exists():
            entries.append(_file_entry(out, feed, again, again, "redelivered"))
    manifest = out / MANIFESTS / f"{day.isoformat()}.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(
        json.dumps({"business_date": day.isoformat(), "files": entries}, indent=2, sort_keys=True) + "\n"
    )


def deliver_late(out: Path) -> list[Path]:
    """Move held (late) partitions into the landing folders; returns the delivered folders.

    The day's manifest entry turns from ``held`` into ``delivered`` with ``"late": true``.
    Safe to call again: nothing held, nothing moved."""
    out = Path(out)
    delivered = []
    for folder in sorted((out / HELD).glob("*/*")):
        target = out / folder.parent.name / folder.name
        if target.exists():
            raise FileExistsError(f"{target}: a late partition would overwrite a delivered one")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder), str(target))
        delivered.append(target)
        manifest = out / MANIFESTS / f"{folder.name}.json"
        if manifest.exists():
            doc = json.loads(manifest.read_text())
            for entry in doc["files"]:
                if entry["feed"] == folder.parent.name and entry["status"] == "held":
                    entry.pop("held_at", None)
                    entry.update(status="delivered", late=True)
            manifest.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        log.info("delivered late partition %s", target.relative_to(out))
    return delivered
