"""The files side of an erasure: everything under the CRM home except the database's own files.

- Landing files (``<landing>/<feed>/<day>/<file>``): the lines of the subject (a subject
  column holds one of the ids) are removed; in any other line an id (a referrer, say) is
  blanked. The file stays valid in its feed's format and encoding; its control record
  (rows and money sums) and the day's manifest (rows, bytes, SHA-256) follow it.
- Other CSV files with a header (ground truth, extracts): the same, by column name.
- JSON files (quality results, lineage, manifests): every string loses the ids.
- Other text files (logs): the lines carrying an id are removed.
- A binary file carrying an id (a model or extract that cannot be edited) or a file named
  after one is deleted; a database file (``*.db``, ``*.sqlite``) is never deleted but left
  and reported: the command then fails, naming it.

A file is read whole only once to look for the ids (bytes): files without them are untouched.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from crm.feeds import Feed, Registry
from crm.generator import MANIFESTS
from crm.generator.faults import CONTROL_SUFFIX, PLAIN_DECIMAL

SKIPPED_DIRS = {"pgdata"}  # the database's own files: erased through SQL
SKIPPED_FILES = {"secrets.json"}
DATABASE_SUFFIXES = {".db", ".sqlite", ".sqlite3"}


@dataclass
class FileCounts:
    rewritten: int = 0
    deleted: int = 0
    lines_removed: int = 0
    values_blanked: int = 0
    left: list[str] = field(default_factory=list)  # paths erase could not rewrite

    def as_dict(self) -> dict[str, int]:
        return {
            "files_rewritten": self.rewritten,
            "files_deleted": self.deleted,
            "lines_removed": self.lines_removed,
            "values_blanked": self.values_blanked,
            "files_left": len(self.left),
        }


def _write_atomically(path: Path, data: bytes) -> None:
    mode = path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".erase-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _blank(value: str, ids: set[str]) -> tuple[str, int]:
    hits = 0
    for i in ids:
        if i in value:
            hits += value.count(i)
            value = value.replace(i, "")
    return value, hits


class _Lines:
    """Rewrites the data lines of a delimited or JSON Lines text, line by line, keeping
    line ends, encoding and every untouched byte."""

    def __init__(self, ids: set[str], subject: set[str], encoding: str, counts: FileCounts) -> None:
        self.ids, self.subject, self.encoding, self.counts = ids, subject, encoding, counts
        self.needles = [i.encode("ascii") for i in ids]
        self.dropped: list[dict[str, str]] = []  # the removed records, for the control record

    def carries(self, raw: bytes) -> bool:
        return any(n in raw for n in self.needles)

    def csv_line(self, raw: bytes, header: list[str], delimiter: str, quotechar: str) -> bytes | None:
        """The line as rewritten, None to remove it."""
        body = raw.rstrip(b"\r\n")
        end = raw[len(body) :]
        text = body.decode(self.encoding, errors="surrogateescape")
        fields = next(csv.reader([text], delimiter=delimiter, quotechar=quotechar), [])
        if len(fields) != len(header):
            return None  # cannot tell whose it is: removed
        record = dict(zip(header, fields, strict=True))
        if any(record.get(c) in self.ids for c in self.subject):
            self.dropped.append(record)
            return None
        blanked = 0
        for i, value in enumerate(fields):
            fields[i], hits = _blank(value, self.ids)
            blanked += hits
        self.counts.values_blanked += blanked
        buf = io.StringIO()
        csv.writer(buf, delimiter=delimiter, quotechar=quotechar, lineterminator="").writerow(fields)
        return buf.getvalue().encode(self.encoding, errors="surrogateescape") + end

    def json_line(self, raw: bytes) -> bytes | None:
        body = raw.rstrip(b"\r\n")
        end = raw[len(body) :]
        try:
            doc = json.loads(body.decode(self.encoding, errors="surrogateescape"))
        except ValueError:
            return None
        if not isinstance(doc, dict):
            return None
        if any(str(doc.get(c)) in self.ids for c in self.subject if doc.get(c) is not None):
            self.dropped.append({k: "" if v is None else str(v) for k, v in doc.items()})
            return None
        doc = self.scrub(doc)
        return json.dumps(doc, ensure_ascii=False).encode(self.encoding, errors="surrogateescape") + end

    def scrub(self, value):
        """``value`` (parsed JSON) with every id cut out of every string."""
        if isinstance(value, str):
            value, hits = _blank(value, self.ids)
            self.counts.values_blanked += hits
            return value
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        if isinstance(value, dict):
            return {self.scrub(k): self.scrub(v) for k, v in value.items()}
        return value

    def rewrite(self, data: bytes, line) -> tuple[bytes, int]:
        """(new bytes, lines removed); ``line(raw)`` rewrites one line carrying an id."""
        out, removed = [], 0
        for raw in data.splitlines(keepends=True):
            if not self.carries(raw):
                out.append(raw)
                continue
            new = line(raw)
            if new is None:
                removed += 1
            else:
                out.append(new)
        return b"".join(out), removed


def _feed_of(path: Path, landing: Path, registry: Registry) -> Feed | None:
    try:
        rel = path.relative_to(landing)
    except ValueError:
        return None
    if len(rel.parts) != 3 or rel.parts[0] not in registry.feeds:
        return None
    feed = registry.feed(rel.parts[0])
    return feed if rel.parts[2] == feed.file else None


def _first_line(data: bytes) -> bytes:
    end = data.find(b"\n")
    return data if end < 0 else data[: end + 1]


def _rewrite_delimited(
    data: bytes, lines: _Lines, delimiter: str, quotechar: str, bom: bytes
) -> tuple[bytes, int]:
    head = _first_line(data)
    header = next(
        csv.reader(
            [head[len(bom) :].decode(lines.encoding, errors="surrogateescape").rstrip("\r\n")],
            delimiter=delimiter,
            quotechar=quotechar,
        ),
        [],
    )
    body, removed = lines.rewrite(
        data[len(head) :], lambda raw: lines.csv_line(raw, header, delimiter, quotechar)
    )
    return head + body, removed


def _fix_control(feed: Feed, path: Path, lines: _Lines, removed: int) -> None:
    """The control record keeps saying what the file holds: fewer rows, smaller sums."""
    control = path.with_name(path.name + CONTROL_SUFFIX)
    if not control.is_file():
        return
    record = json.loads(control.read_text(encoding="utf-8"))
    record["rows"] = max(int(record.get("rows", 0)) - removed, 0)
    if feed.control is not None:
        sums = record.setdefault("sums", {})
        for dropped in lines.dropped:
            currency = dropped.get(feed.control.currency, "")
            for col in feed.control.amounts:
                value = dropped.get(col, "")
                if col in sums and currency in sums[col] and PLAIN_DECIMAL.match(value):
                    total = Decimal(sums[col][currency]) - Decimal(value)
                    sums[col][currency] = str(total.quantize(Decimal("0.01")))
    _write_atomically(control, (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))


def _fix_manifest(landing: Path, path: Path, removed: int) -> None:
    import hashlib

    rel = path.relative_to(landing)
    manifest = landing / MANIFESTS / f"{rel.parts[1]}.json"
    if not manifest.is_file():
        return
    doc = json.loads(manifest.read_text(encoding="utf-8"))
    data = path.read_bytes()
    for entry in doc.get("files", []):
        if entry.get("file") == rel.as_posix():
            entry["rows"] = max(int(entry.get("rows", 0)) - removed, 0)
            entry["bytes"] = len(data)
            entry["sha256"] = hashlib.sha256(data).hexdigest()
    _write_atomically(manifest, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _erase_landing_file(
    path: Path, data: bytes, feed: Feed, ids: set[str], subject: set[str], counts: FileCounts, landing: Path
) -> bytes:
    encoding = feed.encoding
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        encoding = next((e for e in feed.tolerated_encodings if _decodes(data, e)), encoding)
    lines = _Lines(ids, subject, encoding, counts)
    bom = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
    if feed.format == "csv":
        new, removed = _rewrite_delimited(data, lines, feed.delimiter, feed.quotechar, bom)
    else:
        new, removed = lines.rewrite(data, lines.json_line)
    counts.lines_removed += removed
    _write_atomically(path, new)
    _fix_control(feed, path, lines, removed)
    _fix_manifest(landing, path, removed)
    return new


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _erase_other_file(path: Path, data: bytes, ids: set[str], subject: set[str], counts: FileCounts) -> None:
    if path.suffix.lower() in DATABASE_SUFFIXES:
        counts.left.append(str(path))
        return
    if not _decodes(data, "utf-8"):
        path.unlink()
        counts.deleted += 1
        return
    lines = _Lines(ids, subject, "utf-8", counts)
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        if doc is not None:
            indent = 2 if b"\n " in data else None
            new = (json.dumps(lines.scrub(doc), ensure_ascii=False, indent=indent) + "\n").encode("utf-8")
            _write_atomically(path, new)
            counts.rewritten += 1
            return
    if path.suffix.lower() in (".csv", ".psv", ".tsv"):
        delimiter = {".psv": "|", ".tsv": "\t"}.get(path.suffix.lower(), ",")
        new, removed = _rewrite_delimited(data, lines, delimiter, '"', b"")
    else:
        new, removed = lines.rewrite(data, lambda raw: None)
    counts.lines_removed += removed
    _write_atomically(path, new)
    counts.rewritten += 1


def erase_files(
    home: Path, landing: Path, registry: Registry, ids: set[str], subject: set[str], extra_roots=()
) -> FileCounts:
    """Remove or blank ``ids`` in every file under ``home``, ``landing`` and ``extra_roots``
    (the ground truth's folder, say, when set elsewhere; see the module)."""
    counts = FileCounts()
    needles = [i.encode("ascii") for i in ids]
    roots = [home]
    for root in [landing, *extra_roots]:
        if root.is_dir() and not any(_inside(root, r) for r in roots):
            roots.append(root)
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            if Path(dirpath) == home:
                dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]
            for name in filenames:
                path = Path(dirpath) / name
                if path.is_symlink() or not path.is_file() or name in SKIPPED_FILES:
                    continue
                if any(i in name for i in ids):
                    path.unlink()
                    counts.deleted += 1
                    continue
                data = path.read_bytes()
                if not any(n in data for n in needles):
                    continue
                feed = _feed_of(path, landing, registry)
                if feed is not None:
                    _erase_landing_file(path, data, feed, ids, subject, counts, landing)
                    counts.rewritten += 1
                else:
                    _erase_other_file(path, data, ids, subject, counts)
    return counts


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def landing_accounts(landing: Path, registry: Registry, customer_id: str) -> set[str]:
    """The customer's account ids as the landing files of ``core_accounts`` deliver them
    (an erasure re-run after raw was erased still finds them there)."""
    feed = registry.feed("core_accounts")
    found: set[str] = set()
    needle = customer_id.encode("ascii")
    for path in (landing / feed.name).glob(f"*/{feed.file}"):
        data = path.read_bytes()
        if needle not in data:
            continue
        text = data.decode(feed.encoding, errors="replace").lstrip("\ufeff")
        for row in csv.DictReader(io.StringIO(text), delimiter=feed.delimiter, quotechar=feed.quotechar):
            if row.get("customer_id") == customer_id and row.get("account_id"):
                found.add(row["account_id"])
    return found
