"""Run the daily pipeline in-process with ``airflow dags test``: one day, a range, the demo."""

from __future__ import annotations

import datetime as dt
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crm.settings import Settings, get_settings

log = logging.getLogger(__name__)

# The daily DAGs, in the order a day flows through them.
DAILY_DAGS = ("crm_ingest", "crm_transform")


@dataclass
class DagRunOutcome:
    dag_id: str
    day: dt.date
    ok: bool
    seconds: float
    log: Path
    run_id: str | None = None  # Airflow's run id, from its output
    stage_seconds: dict[str, float] = field(default_factory=dict)  # per pipeline stage, from its task lines
    started_at: dt.datetime | None = None  # the first task's start

    def failure_excerpt(self, length: int = 50) -> str:
        """Where the run went wrong: its log from the first error on (or its end), ``length`` lines."""
        lines = self.log.read_text(errors="replace").splitlines()
        marks = ("Traceback", "ERROR", "Task failed", "state=failed", "DagRunState.FAILED")
        first = next((i for i, line in enumerate(lines) if any(m in line for m in marks)), None)
        start = max(0, len(lines) - length) if first is None else first
        return "\n".join([f"{self.dag_id} {self.day}: {self.log}", *lines[start : start + length]])


# The stages of a business day (crm.pipeline_run.STAGES) and the tasks they are; crm_ingest's
# per-feed tasks (task groups: "<feed>.wait_for_file", "<feed>.load") are the ingest stage.
STAGE_OF_TASK = {
    "gate_raw": "gate_raw",
    "gate_recon": "gate_recon",
    "dbt_build": "dbt",
    "gate_mart": "gate_mart",
    "publish": "publish",
    "write_report": "report",
}
_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z?\s")
_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+)")
_RUNNING = re.compile(r"\[DAG TEST\] running task <TaskInstance: [^.\s]+\.(\S+) (\S+) .*ti_id=([0-9a-f-]+)>")
_STATE = re.compile(r"new_state=(\w+).*\bti_id=([0-9a-f-]+)")
_END = re.compile(r"\[DAG TEST\] end task task_id=(\S+)")


class StageTracker:
    """Follows ``airflow dags test``'s own task lines ("[DAG TEST] starting task_id=...",
    "new_state=... ti_id=...", "[DAG TEST] end task task_id=...") and reports each pipeline
    stage as it finishes, with its seconds from the lines' timestamps: first start to last end
    of its tasks (a retried task's retry delay included)."""

    def __init__(self, report: Callable[[str, str, float | None], None] | None = None) -> None:
        self.report = report or (lambda stage, state, seconds: None)
        self.run_id: str | None = None
        self.starts: dict[str, dt.datetime] = {}
        self.ends: dict[str, dt.datetime] = {}
        self.states: dict[str, str] = {}
        self._ti: dict[str, str] = {}
        self._ingest_done = False

    @staticmethod
    def _when(line: str) -> dt.datetime:
        m = _TS.match(line)
        return dt.datetime.fromisoformat(m.group(1)) if m else dt.datetime.now(dt.UTC).replace(tzinfo=None)

    def feed(self, line: str) -> None:
        if "[DAG TEST]" not in line and "new_state=" not in line:
            return
        if m := _START.search(line):
            task = m.group(1)
            if "." not in task:
                self._finish_ingest()  # a day-level task starts once every feed task is done
            self.starts.setdefault(task, self._when(line))
        elif m := _RUNNING.search(line):
            self._ti[m.group(3)] = m.group(1)
            self.run_id = self.run_id or m.group(2)
        elif m := _STATE.search(line):
            if m.group(2) in self._ti:
                self.states[self._ti[m.group(2)]] = m.group(1)
        elif m := _END.search(line):
            task = m.group(1)
            self.ends[task] = self._when(line)
            state = self.states.get(task, "ended")
            stage = STAGE_OF_TASK.get(task)
            if stage:
                self.report(stage, state, self.stage_seconds().get(stage))
            elif "." not in task and state != "success":
                self.report(task, state, self._seconds([task]))

    def _seconds(self, tasks: list[str]) -> float | None:
        starts = [self.starts[t] for t in tasks if t in self.starts]
        ends = [self.ends[t] for t in tasks if t in self.ends]
        if not starts or not ends:
            return None
        return round((max(ends) - min(starts)).total_seconds(), 1)

    def _ingest_tasks(self) -> list[str]:
        return [t for t in self.starts if "." in t]

    def _finish_ingest(self) -> None:
        tasks = self._ingest_tasks()
        if tasks and not self._ingest_done:
            self._ingest_done = True
            bad = sorted({self.states.get(t, "ended") for t in tasks} - {"success", "skipped"})
            self.report("ingest", bad[0] if bad else "success", self._seconds(tasks))

    def finish(self) -> None:
        """The output ended: report an ingest stage no day-level task followed (a feed failed)."""
        self._finish_ingest()

    def stage_seconds(self) -> dict[str, float]:
        seconds = {"ingest": self._seconds(self._ingest_tasks())}
        for task, stage in STAGE_OF_TASK.items():
            seconds[stage] = self._seconds([task])
        return {k: v for k, v in seconds.items() if v is not None}

    def first_start(self) -> dt.datetime | None:
        return min(self.starts.values(), default=None)


def _follow(path: Path, tracker: StageTracker, done: threading.Event) -> None:
    """Feed ``path``'s lines to ``tracker`` as they are written, until ``done`` and the end."""
    with path.open(errors="replace") as fh:
        pending = ""
        while True:
            chunk = fh.readline()
            if chunk:
                pending += chunk
                if pending.endswith("\n"):
                    tracker.feed(pending)
                    pending = ""
                continue
            if done.is_set():
                if pending:
                    tracker.feed(pending)
                return
            time.sleep(0.2)


def available_dags() -> list[str]:
    from crm.settings import REPO_ROOT

    return [d for d in DAILY_DAGS if (REPO_ROOT / "dags" / f"{d}.py").exists()]


def run_dag(
    dag_id: str,
    day: dt.date,
    settings: Settings | None = None,
    on_stage: Callable[[str, str, float | None], None] | None = None,
) -> DagRunOutcome:
    """``airflow dags test DAG DAY`` with the project environment; ok = the run succeeded.

    Airflow's output goes to the run's log file only; ``on_stage(stage, state, seconds)`` is
    called as each pipeline stage finishes (and for any other task that did not succeed).
    """

    from crm.airflow_env import airflow_environ, ensure_metadata_db
    from crm.alerts import NO_DEADLINES

    settings = settings or get_settings()
    ensure_metadata_db(settings)
    if dag_id == "crm_transform":
        from crm.transform import ensure_manifest

        ensure_manifest(settings)  # cosmos renders the DAG from the manifest
    env = airflow_environ(settings)
    env["PYTHONUNBUFFERED"] = "1"  # task lines reach the log (and the progress) as they happen
    # No scheduler, no deadlines: on Airflow 3.3.0 `dags test` of a DAG with a DeadlineAlert
    # marks every successful run failed (DagRun.update_state reads dag.deadline as alert ids
    # while the test-mode DAG holds the alerts themselves: "'dict' object has no attribute
    # 'hex'"). crm.alerts.publish_deadline_alerts declares none when this is set.
    env[NO_DEADLINES] = "1"
    logfile = settings.home / "logs" / f"{dag_id}_{day.isoformat()}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    tracker = StageTracker(on_stage)
    done = threading.Event()
    started = time.monotonic()
    exe = Path(sys.executable).with_name("airflow")
    with logfile.open("w") as out:
        follower = threading.Thread(target=_follow, args=(logfile, tracker, done), daemon=True)
        follower.start()
        try:
            proc = subprocess.run(
                [str(exe), "dags", "test", dag_id, day.isoformat()],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        finally:
            done.set()
    if isinstance(proc.stdout, str):  # a stand-in for airflow that hands its output back
        logfile.write_text(proc.stdout)
        for line in proc.stdout.splitlines(keepends=True):
            tracker.feed(line)
    follower.join()
    tracker.finish()
    seconds = time.monotonic() - started
    # `airflow dags test` exits non-zero when the DagRun failed ("DagRun failed"), so its exit
    # code is the verdict; the output is only kept as the run's log.
    ok = proc.returncode == 0
    log.info("dag=%s day=%s ok=%s seconds=%.1f log=%s", dag_id, day, ok, seconds, logfile)
    started_at = tracker.first_start()
    return DagRunOutcome(
        dag_id,
        day,
        ok,
        seconds,
        logfile,
        run_id=tracker.run_id,
        stage_seconds=tracker.stage_seconds(),
        started_at=started_at.replace(tzinfo=dt.UTC) if started_at else None,
    )


def run_days(days: list[dt.date], settings: Settings | None = None) -> list[DagRunOutcome]:
    """Run each day through every daily DAG, printing each stage as it finishes; record each
    day's run (``audit.pipeline_runs``) and end with their summary. Returns the failed runs
    (empty = all good)."""
    settings = settings or get_settings()
    failed, recorded = _run_days(days, settings)
    print_summary(recorded, days, settings)
    return failed


def _run_days(days: list[dt.date], settings: Settings) -> tuple[list[DagRunOutcome], list[str]]:
    """The failed DAG runs and the run ids recorded, one per day."""
    from crm.pipeline_run import STAGES
    from crm.warehouse import ensure_ready

    ensure_ready(settings)
    failed: list[DagRunOutcome] = []
    recorded: list[str] = []
    for day in days:

        def progress(stage: str, state: str, seconds: float | None, day: dt.date = day) -> None:
            where = f"stage {STAGES.index(stage) + 1}/{len(STAGES)} " if stage in STAGES else ""
            verdict = "ok" if state == "success" else state.upper()
            took = "" if seconds is None else f" {seconds:.1f}s"
            print(f"day {day}: {where}{stage} {verdict}{took}", flush=True)

        outcomes = []
        for dag_id in available_dags():
            outcome = run_dag(dag_id, day, settings, on_stage=progress)
            outcomes.append(outcome)
            if not outcome.ok:
                failed.append(outcome)
                print(f"day {day}: {dag_id} FAILED after {outcome.seconds:.1f}s, log {outcome.log}")
                print(outcome.failure_excerpt())
                break  # the day's later stages need this one
        run_id = _record_day(day, outcomes, settings)
        if run_id:
            recorded.append(run_id)
    return failed, recorded


def _record_day(day: dt.date, outcomes: list[DagRunOutcome], settings: Settings) -> str | None:
    """Record the day's run with the seconds Airflow's task lines gave: crm_transform's run id,
    or crm run's own when the day never reached it. Returns the run id (None: not recorded)."""
    from crm.pipeline_run import record_run

    transform = next((o for o in outcomes if o.dag_id == "crm_transform" and o.run_id), None)
    if transform is not None:
        run_id = transform.run_id
    else:
        run_id = f"crm_run__{day.isoformat()}__{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%S}"
    seconds: dict[str, float] = {}
    for outcome in outcomes:
        seconds |= outcome.stage_seconds
    starts = [o.started_at for o in outcomes if o.started_at]
    try:
        record_run(day, run_id, seconds, started_at=min(starts, default=None), settings=settings)
    except Exception as err:  # the record must not turn a good day into a failed command
        log.warning("could not record the run of %s: %s", day, err)
        print(f"day {day}: run not recorded ({type(err).__name__}: {err})")
        return None
    return run_id


def print_summary(run_ids: list[str], days: list[dt.date], settings: Settings) -> None:
    """The recorded runs (audit.pipeline_runs), one block per day (a table for more than three
    days), then where the reports and the Data Docs are."""
    from crm.pipeline_run import format_summary, format_table, read_records

    records = read_records(run_ids, settings) if run_ids else []
    print()
    print("runs recorded in audit.pipeline_runs:" if records else "no run recorded")
    if len(records) > 3:
        print(format_table(records))
    else:
        for record in records:
            print(format_summary(record))
    reports = [settings.home / "reports" / f"{d.isoformat()}.html" for d in days]
    reports = [r for r in reports if r.exists()]
    if reports:
        more = f"   (+{len(reports) - 1} more in {reports[-1].parent})" if len(reports) > 1 else ""
        print(f"daily report:      {reports[-1].as_uri()}{more}")
    docs = settings.home / "gx" / "data_docs" / "index.html"
    if docs.exists():
        print(f"quality gates:     {docs.as_uri()}   (crm dq run --date {days[-1]})")


def _history_and_model(first: dt.date, last: dt.date, settings: Settings) -> None:
    """Load and build ``first``..``last`` directly (crm.history), then train the churn model on
    the warehouse's labelled months and register it (``crm ml train churn``, its own process:
    the same command a data scientist runs). No labelled month yet: scores stay proxies."""
    from crm.history import build_warehouse, load_days
    from crm.logs import console_warnings_only

    print(f"history: {first}..{last}, loaded and built directly (no Airflow per day)")
    with console_warnings_only():
        load_days(first, last, settings=settings, echo=print)
        build_warehouse(first, last, settings=settings, echo=print)
    crm = Path(sys.executable).with_name("crm")
    print("churn model: crm ml train churn (from the warehouse's labelled months)")
    # One test month: 300 days give six labelled month ends (two to train, the 3-month gap, one to test).
    trained = subprocess.run(
        [str(crm), "ml", "train", "churn", "--test-periods", "1"], text=True, capture_output=True
    )
    print("\n".join("  " + line for line in (trained.stdout + trained.stderr).strip().splitlines()))


def demo(
    customers: int,
    days: int,
    start: dt.date,
    seed: int,
    settings: Settings | None = None,
    history_days: int = 0,
) -> int:
    """Fresh sample bank -> its history loaded and built directly, the churn model trained on
    it -> the last ``days`` through the whole daily pipeline -> say where everything is."""
    from crm.generator import generate
    from crm.report import warehouse_summary
    from crm.warehouse import ensure_ready, owner_url, redact, role_url

    settings = settings or get_settings()
    ensure_ready(settings)
    total = history_days + days
    print(f"generating a sample bank: {customers} customers, {total} days from {start}, seed {seed}")
    generate(
        customers=customers, start=start, days=total, seed=seed, out=settings.landing, truth=settings.truth
    )
    if history_days:
        _history_and_model(start, start + dt.timedelta(history_days - 1), settings)
    run = [start + dt.timedelta(d) for d in range(history_days, total)]
    failed, recorded = _run_days(run, settings)
    print()
    print(warehouse_summary(settings))
    print()
    # Passwords stay off the terminal and CI logs: `crm warehouse url` / `crm bi-url` print them.
    print(f"warehouse (owner): {redact(owner_url(settings))}   (full: crm warehouse url)")
    print(f"BI, read-only:     {redact(role_url('crm_bi_reader', settings))}   (full: crm bi-url)")
    print(f"run logs:          {settings.home / 'logs'}")
    print("dbt docs:          crm dbt docs   (serves every model and column)")
    print_summary(recorded, run, settings)
    if failed:
        print(f"FAILED: {', '.join(f'{f.dag_id} {f.day}' for f in failed)}")
        return 1
    return 0
