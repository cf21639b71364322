"""Structured logging for the CLI and tasks: key=value lines, one event per line."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each record, not as it was at setup: test and CLI
    runners swap stderr for a buffer they later close."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class _OneLineFormatter(logging.Formatter):
    """The console gets one line per event: a traceback goes to the log file only."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def log_file_path() -> Path:
    from crm.settings import get_settings

    return get_settings().home / "logs" / "crm.log"


def setup_logging(level: int = logging.INFO, log_file: Path | None = None) -> None:
    """Events to stderr (one line each) and, with their tracebacks, to ``log_file``
    (default ``<CRM_HOME>/logs/crm.log``, owner-only)."""
    # pgserver's platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI): harmless here.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    root = logging.getLogger()
    if any(getattr(h, "_crm", False) for h in root.handlers):
        return
    handler = _StderrHandler()
    handler._crm = True  # type: ignore[attr-defined]
    handler.setFormatter(_OneLineFormatter(FORMAT))
    root.addHandler(handler)
    log_file = log_file or log_file_path()
    try:
        from crm.settings import private_dir

        private_dir(log_file.parent)  # and CRM_HOME, when this creates it: owner-only
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        to_file = logging.FileHandler(log_file, encoding="utf-8", delay=True)
        to_file.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(to_file)
    except OSError as err:
        logging.getLogger(__name__).warning("no log file at %s (%s): console only", log_file, err)
    root.setLevel(level)
    for noisy in ("alembic", "py.warnings", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextlib.contextmanager
def console_warnings_only() -> Iterator[None]:
    """While a long in-process job prints its own progress (crm demo's history: one line per
    day), the per-file INFO events stay in the log file, off the terminal, and in-process dbt
    prints errors only (``DBT_QUIET``; its log file under the dbt target keeps everything)."""
    handlers = [h for h in logging.getLogger().handlers if getattr(h, "_crm", False)]
    levels = [h.level for h in handlers]
    quiet = os.environ.get("DBT_QUIET")
    for h in handlers:
        h.setLevel(logging.WARNING)
    os.environ["DBT_QUIET"] = "True"
    try:
        yield
    finally:
        for h, level in zip(handlers, levels, strict=True):
            h.setLevel(level)
        if quiet is None:
            os.environ.pop("DBT_QUIET", None)
        else:
            os.environ["DBT_QUIET"] = quiet
