"""Structured logging for the CLI and tasks: key=value lines, one event per line."""

from __future__ import annotations

import logging
import sys
import warnings


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each record, not as it was at setup: test and CLI
    runners swap stderr for a buffer they later close."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(level: int = logging.INFO) -> None:
    # pgserver's platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI): harmless here.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    root = logging.getLogger()
    if any(getattr(h, "_crm", False) for h in root.handlers):
        return
    handler = _StderrHandler()
    handler._crm = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("alembic", "py.warnings"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
