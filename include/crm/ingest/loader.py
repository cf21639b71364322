"""Load one feed's file for one business day into ``raw``, exactly once.

``load_file`` scans the file (``crm.ingest.scan``), then, in one transaction that
replaces the day's partition and quarantine, loads it: a clean file by one typed COPY
(``crm.ingest.clean_path``), any other row by row (``crm.ingest.row_path``: staged as
text, checked against the feed registry's rules in SQL, split into the day's raw
partition and ``quarantine.<feed>`` with line number, reason and raw line). A re-run, a
re-delivery or a retry after a crash leaves exactly one copy. ``audit.load_log`` records
every attempt (``crm.ingest.audit``) and proves
``rows_in_file = rows_loaded + rows_quarantined``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import Connection, sql

from crm.feeds import Feed, Registry, load_registry
from crm.ingest import audit
from crm.ingest.attempt import Attempt
from crm.ingest.clean_path import load_clean
from crm.ingest.lines import FileRefused, Identity, check_inside, identity
from crm.ingest.row_path import load_rows
from crm.ingest.rules import FileRule, RowReason
from crm.ingest.scan import FileFacts, scan_file
from crm.ingest.stage import Quarantined, read_header
from crm.ingest.tables import check_feed_tables

log = logging.getLogger(__name__)

LOAD_WORK_MEM = "256MB"


class LoadFailed(FileRefused):
    """An unexpected error while loading a file: recorded, rolled back, reported in one line
    (the traceback goes to the log, not to the user)."""


class LoadBalanceError(Exception):
    """rows_in_file != rows_loaded + rows_quarantined: something was lost or duplicated."""


@dataclass
class LoadResult:
    feed: str
    business_date: dt.date
    path: Path
    status: str
    sha256: str = ""
    rows_in_file: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    load_id: int | None = None
    warnings: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    late: bool = False
    method: str = ""  # "copy": one typed COPY of a clean file; "rows": staged and checked row by row

    def summary(self) -> str:
        text = (
            f"{self.feed} {self.business_date}: {self.status}, {self.rows_in_file} rows in file, "
            f"{self.rows_loaded} loaded, {self.rows_quarantined} quarantined"
            + (f" [{self.method}]" if self.method else "")
        )
        if self.reasons:
            text += " (" + ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.items())) + ")"
        if self.warnings:
            text += "; warnings: " + "; ".join(self.warnings)
        return text


def load_file(
    conn: Connection,
    feed: Feed,
    day: dt.date,
    path: Path,
    *,
    run_id: str | None = None,
    force: bool = False,
    registry: Registry | None = None,
    clean_copy: bool = True,
    root: Path | None = None,
) -> LoadResult:
    """Load ``path`` as ``feed``'s file for business day ``day``.

    Raises FileRefused, with the rule, for anything that keeps the file from loading,
    an unexpected error included (LoadFailed, rule LOAD_ERROR; its traceback is logged):
    every refusal is in ``audit.load_log`` and nothing of the file is loaded. With
    ``root``, the file must lie inside that folder once every link is resolved.

    ``clean_copy=False`` skips the clean-file path (crm.ingest.clean_path) and stages the
    file row by row even if it is clean (same outcome, slower: for comparison and debugging).
    """
    registry = registry or load_registry()
    result = LoadResult(feed.name, day, path, status="running")
    try:
        if root is not None:
            check_inside(path, root)
        facts = scan_file(feed, path)
    except Exception as err:
        refusal = _refusal(feed, day, path, err, None)
        record_refusal(conn, feed, day, path, refusal, run_id)
        raise refusal from (None if refusal is err else err)
    result.sha256 = facts.sha256
    result.warnings += facts.warnings(feed)

    with conn.transaction():
        check_feed_tables(conn, feed)
        done = None if force else audit.loaded_before(conn, feed, day, facts.sha256)
        if done is not None:
            result.status, result.load_id, result.rows_in_file = "skipped_duplicate", done, facts.data_lines
            log.info("feed=%s day=%s file=%s already loaded as load %s: skipped", feed.name, day, path, done)
            return result

    started = dt.datetime.now(dt.UTC)
    try:
        with conn.transaction():
            load_id = result.load_id = audit.start_load(conn, feed, day, path, facts.sha256, run_id, started)
            quarantined = _load(
                Attempt(conn, feed, registry, day, path, facts, load_id, started), result, clean_copy
            )
            _check_outcome(feed, path, facts, result, quarantined)
            _analyze(conn, feed, day)
            later = audit.request_reprocess_if_late(conn, feed, day, load_id)
            if later is not None:
                result.late = True
                result.warnings.append(
                    f"LATE_PARTITION: loaded after {later}; downstream reprocessing requested"
                )
            audit.mark_loaded(conn, result)
        result.status = "loaded"
    except Exception as err:
        refusal = _refusal(feed, day, path, err, facts.identity)
        audit.record_failure(conn, feed, day, path, facts.sha256, run_id, started, refusal, _status(refusal))
        raise refusal from (None if refusal is err else err)
    log.info("load %s", result.summary())
    return result


def _load(attempt: Attempt, result: LoadResult, clean_copy: bool) -> list[Quarantined]:
    """Replace the day's partition and quarantine with the file's rows: by the clean path if
    the file is clean (and ``clean_copy``), else row by row. Fills in ``result``'s counts."""
    conn, feed, day, facts = attempt.conn, attempt.feed, attempt.day, attempt.facts
    # Hash joins and aggregates over a whole day's file stay in memory.
    conn.execute(sql.SQL("set local work_mem = {}").format(sql.Literal(LOAD_WORK_MEM)))
    # The rule checks are CPU-bound and return few rows: let every core scan the stage.
    conn.execute("set local parallel_setup_cost = 0")
    conn.execute("set local parallel_tuple_cost = 0.0001")
    conn.execute(
        sql.SQL("delete from quarantine.{} where _business_date = %s").format(sql.Identifier(feed.name)),
        (day,),
    )
    if facts.data_lines == 0:
        audit.warn_if_day_emptied(conn, feed, day, result.warnings)
    header = read_header(feed, attempt.path, facts) if feed.format == "csv" else feed.column_names
    quarantined: list[Quarantined] = []
    loaded = load_clean(attempt, header) if clean_copy else None
    result.method = "copy" if loaded is not None else "rows"
    if loaded is None:
        loaded = load_rows(attempt, header, quarantined, result.warnings)
    result.rows_in_file = facts.data_lines
    result.rows_loaded = loaded
    result.rows_quarantined = len(quarantined)
    for q in quarantined:
        result.reasons[q.reason] = result.reasons.get(q.reason, 0) + 1
    return quarantined


def _check_outcome(
    feed: Feed, path: Path, facts: FileFacts, result: LoadResult, quarantined: list[Quarantined]
) -> None:
    """Roll the load back unless every line is accounted for, few enough are bad and the
    file is still the one scanned."""
    if result.rows_in_file != result.rows_loaded + result.rows_quarantined:
        raise LoadBalanceError(
            f"{path}: {result.rows_in_file} rows in file but {result.rows_loaded} loaded + "
            f"{result.rows_quarantined} quarantined; load rolled back"
        )
    _refuse_if_mostly_bad(feed, path, result, quarantined)
    if identity(path) != facts.identity:
        raise FileRefused(path, FileRule.FILE_CHANGED, "the file changed while it was loaded")


def _analyze(conn: Connection, feed: Feed, day: dt.date) -> None:
    """Fresh statistics for the new day (row count; keys and references): the next feeds'
    reference checks (an index probe, not a scan of every customer, for a small file) and
    dbt plan with them. Only those columns: a full ANALYZE of a wide feed costs more than
    its COPY (customers: 0.4 s vs 0.04 s)."""
    lookups = dict.fromkeys([*feed.key, *(c.name for c in feed.columns if c.reference or c.index)])
    # ANALYZE is the table owner's right: the owner's function runs it.
    conn.execute("select raw.analyze_partition(%s, %s, %s)", (feed.name, day, list(lookups)))


def _refusal(feed: Feed, day: dt.date, path: Path, err: Exception, scanned: Identity | None) -> FileRefused:
    """What to tell the user about ``err``: a refusal by rule, in one line.

    A file that changed under the load is FILE_CHANGED, whatever broke first. Anything
    unexpected is LOAD_ERROR, naming only the error's type: its text may quote a value of
    the file, and the full traceback goes to the log.
    """
    changed = scanned is not None and identity(path) != scanned
    if changed and getattr(err, "rule", None) != FileRule.FILE_CHANGED:
        return FileRefused(path, FileRule.FILE_CHANGED, "the file changed while it was loaded")
    if isinstance(err, FileRefused):
        return err
    log.error("feed=%s day=%s file=%s: unexpected error while loading", feed.name, day, path, exc_info=err)
    return LoadFailed(
        path,
        FileRule.LOAD_ERROR,
        f"unexpected {type(err).__name__} while loading; the traceback is in the log. "
        f"Fix the cause, then re-run: crm ingest --date {day} --feed {feed.name}",
    )


def _refuse_if_mostly_bad(feed: Feed, path: Path, result: LoadResult, quarantined: list[Quarantined]) -> None:
    """TOO_MANY_BAD_ROWS if more lines are bad than the feed tolerates (the load rolls back)."""
    # Rows of an erased customer are refused by request, not broken: they never refuse a file.
    erased = result.reasons.get(RowReason.ERASED_SUBJECT, 0)
    bad, lines = result.rows_quarantined - erased, result.rows_in_file - erased
    too_many = lines >= feed.bad_share_min_rows and bad > feed.max_bad_share * lines
    if not bad or not (too_many or result.rows_loaded == 0):
        return
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(result.reasons.items()))
    first = "; ".join(
        f"line {q.line} {q.reason}" + (f" in column '{q.column}'" if q.column else "")
        for q in sorted(quarantined, key=lambda q: q.line)[:3]
    )
    raise FileRefused(
        path,
        FileRule.TOO_MANY_BAD_ROWS,
        f"{bad} of {lines} lines broke row rules ({reasons}; first: {first}), more than the feed's "
        f"max_bad_share of {feed.max_bad_share:.0%}"
        + ("" if too_many else " (no line was good)")
        + "; the file stays in landing for inspection",
    )


def _status(err: Exception) -> str:
    """The load log's status for a failed attempt: refused by a rule, or failed unexpectedly."""
    return "refused" if isinstance(err, FileRefused) and not isinstance(err, LoadFailed) else "failed"


def record_refusal(
    conn: Connection, feed: Feed, day: dt.date, path: Path, err: FileRefused, run_id: str | None = None
) -> None:
    """Record a file refused before any load started (missing, empty, truncated, encoding)."""
    audit.record_failure(conn, feed, day, path, "", run_id, dt.datetime.now(dt.UTC), err, _status(err))
