"""Run a quality gate for one business day: GX validates, severity decides, ``dq`` records.

Why not the GX provider's ``GXValidateCheckpointOperator``: it fails the task on any failed
expectation, whatever its severity (checked on these pins). Severity is declared per
expectation in the suites (GX's own ``severity`` field); this runner applies it: a
``critical`` failure fails the gate (``GateFailed``, and the day stops), a ``warning`` is
recorded and the run goes on. Every expectation's outcome, with its observed value and the
bounds it was judged against, lands in ``dq.expectation_results``.

Each gate connects as the role of its stage (raw: ``crm_loader``; mart: ``crm_transformer``);
the connection string reaches GX through the ``${CRM_GX_WAREHOUSE_URL}`` reference in
``expectations/gx/great_expectations.yml``, set in this process's environment only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from crm.quality import history
from crm.quality.suites import DAY_SETTING, RESULTS_VARIABLE, URL_VARIABLE
from crm.settings import Settings, get_settings

log = logging.getLogger(__name__)

GATE_ROLES = {"raw": "crm_loader", "recon": "crm_loader", "mart": "crm_transformer"}
SAMPLE = 5  # unexpected values kept per expectation
NOTHING_TO_JUDGE = {"expect_column_median_to_be_between", "expect_column_mean_to_be_between"}
VALUE_CHECKS = NOTHING_TO_JUDGE | {
    "expect_column_proportion_of_non_null_values_to_be_between",
    "expect_column_unique_value_count_to_be_between",
}


class GateFailed(Exception):
    """A critical expectation failed: the day does not flow on."""


@dataclass
class Outcome:
    check: str
    expectation: str
    column: str | None
    severity: str
    success: bool
    observed: Any
    expected: dict[str, Any]
    unexpected_count: int | None = None
    sample: list[Any] | None = None

    def line(self) -> str:
        bounds = ", ".join(f"{k} {_short(v)}" for k, v in self.expected.items() if k in ("min", "max"))
        where = f" {self.column}" if self.column else ""
        return f"{self.check}{where}: observed {_short(self.observed)}" + (
            f" (expected {bounds})" if bounds else ""
        )


@dataclass
class SuiteRun:
    suite: str
    gate: str
    subject: str
    day: dt.date
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "critical"]

    @property
    def warned(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity != "critical"]


@dataclass
class GateRun:
    gate: str
    day: dt.date
    runs: list[SuiteRun] = field(default_factory=list)
    docs: str | None = None

    @property
    def success(self) -> bool:
        return not any(r.failed for r in self.runs)

    def summary(self) -> str:
        """Failed expectations first, then warnings, then a count of what passed."""
        lines = [f"gate {self.gate} {self.day}: {'PASSED' if self.success else 'FAILED'}"]
        for run in self.runs:
            lines += [f"  CRITICAL {run.subject}: {o.line()}" for o in run.failed]
        for run in self.runs:
            lines += [f"  warning  {run.subject}: {o.line()}" for o in run.warned]
        passed = sum(o.success for r in self.runs for o in r.outcomes)
        total = sum(len(r.outcomes) for r in self.runs)
        lines.append(f"  {passed} of {total} expectations passed in {len(self.runs)} suites")
        if self.docs:
            lines.append(f"  Data Docs: {self.docs}")
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        if not self.success:
            first = next(r for r in self.runs if r.failed)
            raise GateFailed(
                f"{self.gate} gate failed for {self.day}: {first.subject} {first.failed[0].line()}"
                f" ({sum(len(r.failed) for r in self.runs)} critical failures; crm dq run --date {self.day}"
                f" --gate {self.gate} shows them all)"
            )


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def context(gate: str, day: dt.date | None = None, settings: Settings | None = None):
    """The GX file context of ``expectations/``, connected as the gate's role, its
    connection's ``crm.gate_day`` set to ``day`` (the suites' batches read that day)."""
    from urllib.parse import quote

    from crm.warehouse import role_url

    settings = settings or get_settings()
    url = role_url(GATE_ROLES[gate], settings)
    if day is not None:
        option = quote(f"-c {DAY_SETTING}={day.isoformat()}")
        url += ("&" if "?" in url else "?") + f"options={option}"
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    os.environ[URL_VARIABLE] = url
    os.environ[RESULTS_VARIABLE] = str(settings.home / "gx")
    import great_expectations as gx

    with contextlib.redirect_stdout(io.StringIO()):  # GX prints its datasources on load
        return gx.get_context(mode="file", project_root_dir=settings.expectations_dir)


def _outcome(result, bands: dict[str, dict[str, Any]]) -> Outcome:
    cfg = result.expectation_config
    check = cfg.meta.get("check", cfg.type)
    body = result.result or {}
    observed = body.get("observed_value")
    error = (result.exception_info or {}).get("exception_message") if not result.success else None
    if error and observed is None:
        observed = f"error: {error}"
    if isinstance(observed, Decimal):
        observed = float(observed)
    success = bool(result.success)
    if observed is None and not error and cfg.type in NOTHING_TO_JUDGE:
        success = True  # a median of no values: the column is empty that day (null rates judge that)
    expected = dict(bands.get(check, {}))
    for key in ("min_value", "max_value"):
        value = cfg.kwargs.get(key)
        if value is not None and not isinstance(value, dict):
            expected[key.removesuffix("_value")] = value
    sample = body.get("partial_unexpected_list") or body.get("details", {}).get("unexpected_rows")
    return Outcome(
        check=check,
        expectation=cfg.type,
        column=cfg.kwargs.get("column"),
        severity=str(getattr(cfg.severity, "value", cfg.severity) or "critical"),
        success=success,
        observed=observed,
        expected=expected,
        unexpected_count=body.get("unexpected_count"),
        sample=list(sample)[:SAMPLE] if sample else None,
    )


def _nothing_to_judge_on_a_thin_day(outcomes: list[Outcome]) -> list[Outcome]:
    """A day with fewer than ``history.MIN_SAMPLE`` rows (none: a branch closed on Sunday;
    five campaign contacts) is judged by its volume alone: a null rate or a median of a
    handful of rows says nothing, and is kept out of tomorrow's history."""
    volume = next((o for o in outcomes if o.expectation == "expect_table_row_count_to_be_between"), None)
    if (
        volume is None
        or not isinstance(volume.observed, int | float)
        or volume.observed >= history.MIN_SAMPLE
    ):
        return outcomes
    for o in outcomes:
        if o is not volume and o.expectation in VALUE_CHECKS:
            o.success, o.observed = True, None
            o.expected = {**o.expected, "not_judged": f"{volume.observed} rows (< {history.MIN_SAMPLE})"}
    return outcomes


def _record(conn, run: SuiteRun, started: dt.datetime, pipeline_run_id: str | None) -> None:
    run_id = conn.execute(
        "insert into dq.validation_runs (gate, subject, business_date, suite, success, critical_failures,"
        " warnings, pipeline_run_id, started_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s) returning run_id",
        (
            run.gate,
            run.subject,
            run.day,
            run.suite,
            not run.failed,
            len(run.failed),
            len(run.warned),
            pipeline_run_id,
            started,
        ),
    ).fetchone()[0]
    dump = lambda v: None if v is None else json.dumps(v, default=str)  # noqa: E731
    with conn.cursor() as cur:
        cur.executemany(
            "insert into dq.expectation_results (run_id, check_name, expectation_type, column_name, severity,"
            " success, observed_value, expected, unexpected_count, unexpected_sample)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    run_id,
                    o.check,
                    o.expectation,
                    o.column,
                    o.severity,
                    o.success,
                    dump(o.observed),
                    dump(o.expected),
                    o.unexpected_count,
                    dump(o.sample),
                )
                for o in run.outcomes
            ],
        )


def run_gate(
    gate: str,
    day: dt.date,
    *,
    subjects: list[str] | None = None,
    pipeline_run_id: str | None = None,
    settings: Settings | None = None,
    docs: bool = True,
) -> GateRun:
    """Validate ``day`` with every suite of ``gate`` (or those of ``subjects``), record the
    results in ``dq``, rebuild the Data Docs. Does not raise on failures: see
    ``GateRun.raise_if_failed``."""
    from crm.warehouse import connect

    settings = settings or get_settings()
    ctx = context(gate, day, settings)
    out = GateRun(gate, day)
    names = sorted(
        vd.name
        for vd in ctx.validation_definitions.all()
        if vd.name.startswith(f"{gate}.") and (subjects is None or vd.name.split(".", 1)[1] in subjects)
    )
    with connect(GATE_ROLES[gate], settings=settings, autocommit=True) as conn:
        if gate == "recon":
            from crm.quality.recon import reconcile

            reconcile(conn, day, settings.landing)
        for name in names:
            started, clock = dt.datetime.now(dt.UTC), time.perf_counter()
            definition = ctx.validation_definitions.get(name)
            subject = name.split(".", 1)[1]
            checks = [
                (e.meta["check"], e.expectation_type, e.meta["history"])
                for e in definition.suite.expectations
                if e.meta.get("history")
            ]
            params, bands = history.parameters(conn, gate, subject, day, checks)
            result = definition.run(expectation_parameters=params, result_format="SUMMARY")
            outcomes = _nothing_to_judge_on_a_thin_day([_outcome(r, bands) for r in result.results])
            run = SuiteRun(name, gate, subject, day, outcomes)
            run.seconds = time.perf_counter() - clock
            _record(conn, run, started, pipeline_run_id)
            out.runs.append(run)
            log.info(
                "gate=%s subject=%s day=%s critical_failures=%d warnings=%d seconds=%.2f",
                gate,
                subject,
                day,
                len(run.failed),
                len(run.warned),
                run.seconds,
            )
    if docs:
        out.docs = build_docs(ctx, settings)
    _release_connections(ctx)
    return out


def _release_connections(ctx) -> None:
    """Close the pooled connections GX opened as the gate's role. GX keeps a pool per engine
    and closes it only when garbage-collected: a process that runs gates day after day (crm
    dq, tests, a backfill) otherwise reaches the role's connection limit (20 for crm_loader)."""
    from crm.quality.suites import DATASOURCE

    source = ctx.data_sources.get(DATASOURCE)
    for engine in (source.get_engine(), getattr(source.get_execution_engine(), "engine", None)):
        if engine is not None:
            engine.dispose()


def build_docs(ctx, settings: Settings) -> str:
    ctx.build_data_docs()
    return str(settings.home / "gx" / "data_docs" / "index.html")
