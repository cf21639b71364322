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

from crm.quality.suites import DAY_SETTING, FEEDS_SETTING, RESULTS_VARIABLE, URL_VARIABLE
from crm.settings import Settings, get_settings

log = logging.getLogger(__name__)

GATE_ROLES = {"raw": "crm_loader", "recon": "crm_loader", "mart": "crm_transformer"}
SAMPLE = 5  # unexpected values kept per expectation


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


def context(
    gate: str, day: dt.date | None = None, settings: Settings | None = None, feeds: list[str] | None = None
):
    """The GX file context of ``expectations/``, connected as the gate's role, its
    connection's ``crm.gate_day`` set to ``day`` (the suites' batches read that day) and
    ``crm.gate_feeds`` to ``feeds`` (the raw gate's profile batch reads those feeds)."""
    from urllib.parse import quote

    from crm.warehouse import role_url

    settings = settings or get_settings()
    url = role_url(GATE_ROLES[gate], settings)
    options = [f"-c {DAY_SETTING}={day.isoformat()}"] if day is not None else []
    options += [f"-c {FEEDS_SETTING}={','.join(feeds)}"] if feeds else []
    if options:
        url += ("&" if "?" in url else "?") + f"options={quote(' '.join(options))}"
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    os.environ[URL_VARIABLE] = url
    os.environ[RESULTS_VARIABLE] = str(settings.home / "gx")
    import great_expectations as gx

    with contextlib.redirect_stdout(io.StringIO()):  # GX prints its datasources on load
        return gx.get_context(mode="file", project_root_dir=settings.expectations_dir)


def _outcome(result) -> Outcome:
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
    expected = {}
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
    from crm.feeds import load_registry
    from crm.warehouse import connect

    settings = settings or get_settings()
    registry = load_registry()
    feeds = [f.name for f in registry.load_order() if subjects is None or f.name in subjects]
    ctx = context(gate, day, settings, feeds=feeds if gate == "raw" else None)
    out = GateRun(gate, day)
    names = (
        []
        if gate == "raw"
        else sorted(
            vd.name
            for vd in ctx.validation_definitions.all()
            if vd.name.startswith(f"{gate}.") and (subjects is None or vd.name.split(".", 1)[1] in subjects)
        )
    )
    with connect(GATE_ROLES[gate], settings=settings, autocommit=True) as conn:
        if gate == "recon":
            from crm.quality.recon import reconcile

            reconcile(conn, day, settings.landing)
        if gate == "raw":
            own = lambda: connect(GATE_ROLES[gate], settings=settings, autocommit=True)  # noqa: E731
            out.runs += _run_raw(ctx, conn, own, registry, day, feeds, pipeline_run_id)
        for name in names:
            started, clock = dt.datetime.now(dt.UTC), time.perf_counter()
            definition = ctx.validation_definitions.get(name)
            subject = name.split(".", 1)[1]
            result = definition.run(result_format="SUMMARY")
            outcomes = [_outcome(r) for r in result.results]
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


RAW_SUITE = "raw.profile"


def _run_raw(
    ctx, conn, own, registry, day: dt.date, feeds: list[str], pipeline_run_id: str | None
) -> list[SuiteRun]:
    """Profile ``feeds`` on ``day`` (crm.quality.profile; ``own`` opens a connection of the
    gate's role for each profiling worker), let GX judge the profile, record one run per feed
    with one result per figure."""
    from crm.quality.profile import profile_day

    started = dt.datetime.now(dt.UTC)
    definition = ctx.validation_definitions.get(RAW_SUITE)
    figures = definition.suite.meta["figures"]
    rows, seconds, passed = profile_day(conn, own, registry, figures, feeds, day)
    clock = time.perf_counter()
    verdict = {o.severity: o for o in map(_outcome, definition.run(result_format="SUMMARY").results)}
    judged_s = (time.perf_counter() - clock) / max(len(feeds), 1)
    runs = []
    for feed in feeds:
        outcomes = [
            Outcome(
                check=r["check_name"],
                expectation=r["kind"],
                column=r["column_name"],
                severity=r["severity"],
                success=passed[(feed, r["check_name"])],
                observed=r["observed"],
                expected=r["band"],
            )
            for r in rows
            if r["feed"] == feed
        ]
        runs.append(SuiteRun(RAW_SUITE, "raw", feed, day, outcomes, seconds[feed] + judged_s))
        _record(conn, runs[-1], started, pipeline_run_id)
    for severity, gx in verdict.items():  # GX and the profile's own column must agree
        failed = [o for r in runs for o in r.outcomes if o.severity == severity and not o.success]
        if gx.success == bool(failed) or str(gx.observed).startswith("error"):
            raise RuntimeError(
                f"raw gate {day}: GX's {gx.check} says {gx.observed}, the profile {len(failed)}"
            )
    return runs


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
    """Rebuild the Data Docs site, one process at a time: GX rewrites the whole site, and two
    gate tasks building it at once (a backfill's runs in parallel) failed one of them on a
    page the other had just replaced (FileNotFoundError), after its verdict was recorded."""
    import fcntl

    site = settings.home / "gx"
    site.mkdir(parents=True, exist_ok=True)
    with open(site / ".data_docs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ctx.build_data_docs()
    return str(site / "data_docs" / "index.html")
