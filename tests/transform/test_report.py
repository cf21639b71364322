"""`crm report`: the CRM head's daily page, written from a built warehouse.

The page must open offline (nothing fetched by a src or href), show a plot with data in
every section that has data, say in one line what is absent, and never carry a customer's
name, mobile or national id.
"""

from __future__ import annotations

import datetime as dt
import json
from html.parser import HTMLParser

import psycopg
from typer.testing import CliRunner

from crm.cli import app
from crm.reporting import report_path
from crm.reporting.data import collect
from crm.reporting.page import sections
from crm.warehouse import connect

from .bank import DAYS, START

DAY = START + dt.timedelta(days=DAYS - 2)  # the last day the template built


class _Links(HTMLParser):
    """Every src and href attribute of the page (script bodies are data, not tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [v or "" for k, v in attrs if k in ("src", "href")]


def _record_quality_run(url: str) -> None:
    """A gate run for the day as the gates write it: one critical failure, one warning, a break."""
    with psycopg.connect(url, autocommit=True) as conn:
        runs = [
            ("raw", "core_balances", False, 1, 1),
            ("raw", "atm_events", True, 0, 0),
            ("recon", "core_balances", True, 0, 1),
            ("mart", "segments", True, 0, 0),
        ]
        for gate, subject, success, critical, warnings in runs:
            run_id = conn.execute(
                "insert into dq.validation_runs (gate, subject, business_date, suite, success,"
                " critical_failures, warnings, started_at) values (%s, %s, %s, %s, %s, %s, %s, now())"
                " returning run_id",
                (gate, subject, DAY, f"{gate}.{subject}", success, critical, warnings),
            ).fetchone()[0]
            if subject == "core_balances" and gate == "raw":
                for check, severity in (("raw.volume", "critical"), ("raw.null_share", "warning")):
                    conn.execute(
                        "insert into dq.expectation_results (run_id, check_name, expectation_type,"
                        " column_name, severity, success, unexpected_count) values (%s, %s, %s, %s, %s, false, 7)",
                        (run_id, check, "expect_table_row_count_to_be_between", "ledger_balance", severity),
                    )
        conn.execute(
            "insert into dq.reconciliation_breaks (business_date, feed, check_name, item, expected, actual,"
            " difference) values (%s, 'core_balances', 'recon.amounts', 'HKD', 100, 90, -10)",
            (DAY,),
        )


def _personal_values(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("select full_name, mobile, national_id from raw.core_customers").fetchall()
    return {v for row in rows for v in row if v}


def _has_data(trace) -> bool:
    return any(getattr(trace, a, None) is not None and len(getattr(trace, a)) > 0 for a in ("x", "y", "z"))


def test_report_of_the_last_built_day_is_offline_plotted_and_without_personal_data(warehouse):
    _record_quality_run(warehouse)

    result = CliRunner().invoke(app, ["report", "--date", DAY.isoformat()])
    assert result.exit_code == 0, result.output
    path = report_path(DAY)
    assert path.exists() and f"wrote {path}" in result.output
    html = path.read_text(encoding="utf-8")

    links = _Links()
    links.feed(html)
    assert not [u for u in links.urls if u.lower().startswith(("http://", "https://", "//"))]
    assert html.count("Plotly.newPlot(") >= 6

    with connect() as conn:
        data = collect(conn, DAY)
    built = sections(data)
    assert len(built) == 6
    for section in built:
        assert section.figures, f"{section.title}: no figure ({section.notes})"
        for fig in section.figures:
            assert any(_has_data(t) for t in fig.data), f"{section.title}: {fig.layout.title.text} is empty"
            json.loads(fig.to_json())  # what the page embeds
    assert html.count("Plotly.newPlot(") == sum(len(s.figures) for s in built)

    quality = built[-1]
    assert {"Quality gates", "Rows quarantined per feed", "Reconciliation breaks"} <= {
        f.layout.title.text for f in quality.figures
    }
    assert "CRITICAL raw.core_balances: raw.volume (ledger_balance), 7 unexpected" in html
    assert "WARNING raw.core_balances: raw.null_share" in html

    personal = _personal_values(warehouse)
    assert personal
    leaked = [v for v in personal if v in html]
    assert not leaked, f"personal data in the report: {leaked[:3]}"


def test_a_day_without_data_says_so_in_one_line_per_section(warehouse, tmp_path):
    day = START - dt.timedelta(days=40)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--date", day.isoformat(), "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    with connect() as conn:
        built = sections(collect(conn, day))
    for section in built:
        assert not section.figures and section.notes, section.title
        for note in section.notes:
            assert "\n" not in note and note.startswith("No ")
            assert note in html
    assert "Plotly.newPlot(" not in html


def test_a_bad_date_is_a_usage_error():
    result = CliRunner().invoke(app, ["report", "--date", "2026-02-30"])
    assert result.exit_code == 2
    assert "is not a date" in result.output
