"""The daily CRM report: one self-contained HTML page per business day (var/reports/<D>.html).

``write_report`` reads the marts and the quality ledger (``data``), draws the plots and lays
out the page (``page``). Importing this package is cheap; pandas and plotly load on use.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from crm.settings import Settings, get_settings


def report_path(day: dt.date, settings: Settings | None = None) -> Path:
    """Where the report of ``day`` is written: $CRM_HOME/reports/<YYYY-MM-DD>.html."""
    return (settings or get_settings()).home / "reports" / f"{day.isoformat()}.html"


def write_report(day: dt.date, out: Path | None = None, settings: Settings | None = None) -> Path:
    """Write the report of ``day`` (as ``crm_transformer``, which builds the marts and reads the
    quality ledger and the load log; read-only here) and return its path."""
    from crm.reporting.data import collect
    from crm.reporting.page import render
    from crm.warehouse import connect

    with connect("crm_transformer", settings=settings) as conn:
        data = collect(conn, day)
    path = out or report_path(day, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render(data), encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a page
    return path
