"""Alerts under real Airflow: a failed task's notifiers (crm.dag_defaults) send one message per
channel, each naming the DAG, the task and the business day and linking to the task's log;
crm_transform declares its publication deadline; crm_ingest's daily schedule backfills.

Only the endpoints are stand-ins: a local HTTP server receives Apprise's real ``json://`` and
``form://`` POSTs, and a minimal local SMTP server receives the real SmtpNotifier's e-mail.
Airflow runs in subprocesses with their own AIRFLOW_HOME (it reads its configuration once, at
import), as in test_dag_integrity.
"""

from __future__ import annotations

import datetime as dt
import email
import json
import os
import re
import socketserver
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from crm.dates import bank_timezone
from crm.settings import REPO_ROOT

DAY = "2026-01-05"
BASE_URL = "http://airflow.alerts.test:8793"  # only ever appears in links, never called
PROBE_DAG = """
import datetime as dt
from airflow.sdk import dag, task
from crm.dag_defaults import default_args

@dag(dag_id="alert_probe", schedule=None, start_date=dt.datetime(2026, 1, 1),
     default_args=default_args(retries=0))
def alert_probe():
    @task
    def load_day():
        raise RuntimeError("the probe fails on purpose")
    load_day()

alert_probe()
"""


class Endpoints:
    """A local HTTP server and SMTP server that record what they receive."""

    def __init__(self) -> None:
        self.http: list[dict] = []
        self.mail: list[bytes] = []
        received = self

        class Http(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.http.append(
                    {"path": self.path, "type": self.headers.get("Content-Type", ""), "body": body.decode()}
                )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        class Smtp(socketserver.StreamRequestHandler):
            def handle(self):
                def say(line: str) -> None:
                    self.wfile.write(line.encode() + b"\r\n")

                say("220 alerts.test")
                while line := self.rfile.readline():
                    cmd = line.decode().strip().upper()
                    if cmd.startswith(("EHLO", "HELO", "MAIL", "RCPT", "RSET", "NOOP")):
                        say("250 ok")
                    elif cmd == "DATA":
                        say("354 end with .")
                        lines = []
                        while (data := self.rfile.readline()) not in (b".\r\n", b""):
                            lines.append(data)
                        received.mail.append(b"".join(lines))
                        say("250 queued")
                    elif cmd == "QUIT":
                        say("221 bye")
                        return
                    else:
                        say("502 not implemented")

        self.http_server = ThreadingHTTPServer(("127.0.0.1", 0), Http)
        self.smtp_server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Smtp)
        for server in (self.http_server, self.smtp_server):
            threading.Thread(target=server.serve_forever, daemon=True).start()

    @property
    def http_port(self) -> int:
        return self.http_server.server_address[1]

    @property
    def smtp_port(self) -> int:
        return self.smtp_server.server_address[1]

    def close(self) -> None:
        for server in (self.http_server, self.smtp_server):
            server.shutdown()
            server.server_close()

    def texts(self) -> dict[str, str]:
        """Each message's text by channel: webhook (json://), apprise (form://), smtp."""
        out: dict[str, str] = {}
        for req in self.http:
            if req["path"] == "/hook":
                msg = json.loads(req["body"])
                out["webhook"] = msg["title"] + "\n" + msg["message"]
            elif req["path"] == "/form":
                form = dict(urllib.parse.parse_qsl(req["body"]))
                out["apprise"] = form["title"] + "\n" + form["message"]
        for raw in self.mail:
            msg = email.message_from_bytes(raw)
            parts = [p for p in msg.walk() if p.get_content_type() == "text/html"]
            html = parts[0].get_payload(decode=True).decode()
            out["smtp"] = str(msg["Subject"]) + "\n" + re.sub(r"<[^>]+>", "", html)  # the text shown
        return out


@pytest.fixture
def endpoints():
    ends = Endpoints()
    yield ends
    ends.close()


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory) -> dict[str, str]:
    """A fresh Airflow home with a migrated SQLite metadata DB and the probe DAG."""
    home = tmp_path_factory.mktemp("airflow_alerts")
    dags = home / "dags"
    dags.mkdir()
    (dags / "alert_probe.py").write_text(PROBE_DAG)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CRM_", "WAREHOUSE_URL"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DEFAULT_TIMEZONE": bank_timezone(),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__API__BASE_URL": BASE_URL,
            "AIRFLOW__OPENLINEAGE__DISABLED": "True",
            "CRM_HOME": str(home / "crm"),
            "GX_ANALYTICS_ENABLED": "False",
            "SCARF_ANALYTICS": "false",
            "DO_NOT_TRACK": "1",
            "PYTHONPATH": os.pathsep.join((str(REPO_ROOT), str(REPO_ROOT / "include"))),
        }
    )
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return env


def channel_env(env: dict[str, str], ends: Endpoints) -> dict[str, str]:
    """All four channels on; the Apprise and SMTP addresses as Airflow connections in the
    environment (AIRFLOW_CONN_*), as a deployment's secrets would provide them."""
    apprise_conn = {
        "conn_type": "apprise",
        "extra": {"config": {"path": f"form://127.0.0.1:{ends.http_port}/form"}},
    }
    smtp_conn = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": ends.smtp_port,
        "extra": {
            "from_email": "airflow@alerts.test",
            "disable_tls": True,
            "disable_ssl": True,
            "timeout": 10,
        },
    }
    return {
        **env,
        "CRM_ALERT_CHANNELS": "log,webhook,apprise,smtp",
        "CRM_ALERT_WEBHOOK_URL": f"json://127.0.0.1:{ends.http_port}/hook",
        "CRM_ALERT_EMAIL": "ops@alerts.test",
        "AIRFLOW_CONN_APPRISE_DEFAULT": json.dumps(apprise_conn),
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(smtp_conn),
    }


def test_a_failed_task_sends_one_message_per_channel_with_dag_task_day_and_log_link(airflow_env, endpoints):
    env = channel_env(airflow_env, endpoints)
    airflow = str(Path(sys.executable).with_name("airflow"))
    proc = subprocess.run(
        [airflow, "dags", "test", "alert_probe", DAY],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, "the probe task fails, so must the run"
    alert_lines = [line for line in output.splitlines() if "alert {" in line]
    assert len(alert_lines) == 1, "the log channel writes one line per failure"
    line = alert_lines[0]
    payload, _ = json.JSONDecoder().raw_decode(line, line.index("alert {") + len("alert "))
    # The run's id as the task saw it (manual__<trigger time>); the link is Airflow's own
    # task-instance log URL under [api] base_url, for the first try.
    run_id = payload["run_id"]
    assert run_id.startswith("manual__")
    log_url = f"{BASE_URL}/dags/alert_probe/runs/{urllib.parse.quote(run_id)}/tasks/load_day?try_number=1"
    assert payload["day"] == DAY and payload["task_id"] == "load_day" and payload["log_url"] == log_url

    texts = endpoints.texts()
    assert len(endpoints.http) == 2 and len(endpoints.mail) == 1, (endpoints.http, output[-3000:])
    assert set(texts) == {"webhook", "apprise", "smtp"}
    for channel, text in texts.items():
        for fact in ("alert_probe", "load_day", f"business day {DAY}", log_url):
            assert fact in text, f"{channel} lacks {fact!r}: {text}"
        assert "RuntimeError: the probe fails on purpose" in text, channel
    assert next(r for r in endpoints.http if r["path"] == "/hook")["type"].startswith("application/json")


DEADLINE_PROBE = r"""
import asyncio, json, sys
from crm.alerts import deadline_missed
context = {
    "dag_run": {"dag_id": "crm_transform", "run_id": "asset_triggered__2026-01-06T01:00:00+00:00",
                "logical_date": "2026-01-04T16:00:00+00:00", "conf": {}},
    "deadline": {"id": "x", "deadline_time": "2026-01-05T23:00:00+00:00"},
}
asyncio.run(deadline_missed(context=context))
"""


def test_a_missed_deadline_reaches_the_same_channels(airflow_env, endpoints):
    """deadline_missed as Airflow's triggerer calls it, with the context the scheduler gives."""
    env = channel_env(airflow_env, endpoints)
    proc = subprocess.run(
        [sys.executable, "-c", DEADLINE_PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    texts = endpoints.texts()
    assert set(texts) == {"webhook", "apprise", "smtp"}, proc.stderr[-3000:]
    run_url = f"{BASE_URL}/dags/crm_transform/runs/" + urllib.parse.quote(
        "asset_triggered__2026-01-06T01:00:00+00:00"
    )
    deadline = dt.datetime.fromisoformat("2026-01-05T23:00:00+00:00")  # as in DEADLINE_PROBE
    deadline_local = deadline.astimezone(ZoneInfo(bank_timezone())).isoformat(timespec="minutes")
    for channel, text in texts.items():
        assert "publication deadline missed" in text and "crm_transform" in text, channel
        assert f"business day {DAY}" in text and run_url in text, f"{channel}: {text}"
        assert f"not published by {deadline_local}" in text, f"{channel}: {text}"


DAG_PROBE = r"""
import json
from airflow.models import DagBag
from airflow.serialization.serialized_objects import DagSerialization
bag = DagBag(dag_folder=__import__("os").environ["PROBE_DAGS"])
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}}
for dag_id, dag in bag.dags.items():
    back = DagSerialization.from_dict(DagSerialization.to_dict(dag))  # what the scheduler reads
    out[dag_id] = {
        "max_active_runs": dag.max_active_runs,
        "catchup": dag.catchup,
        "timetable": type(dag.timetable).__name__,
        "timezone": str(getattr(dag.timetable, "timezone", "")),
        "deadlines": [
            {"reference": type(d.reference).__name__, "interval_s": d.interval.total_seconds(),
             "callback": d.callback.path, "name": d.name}
            for d in (dag.deadline or [])
        ],
        "serialized_deadlines": len(back.deadline or []),
        "failure_notifiers": sorted({type(n).__name__ for t in dag.tasks for n in t.on_failure_callback}),
    }
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def project_dags(airflow_env) -> dict:
    from crm.settings import get_settings

    env = {
        **airflow_env,
        "PROBE_DAGS": str(REPO_ROOT / "dags"),
        "CRM_PUBLISH_DEADLINE": "06:30",
        "CRM_PUBLISH_WITHIN": "02:00",
        "CRM_ALERT_CHANNELS": "log,webhook",
        "CRM_ALERT_WEBHOOK_URL": "json://127.0.0.1:9/hook",
        "CRM_DBT_TARGET_DIR": str(get_settings().dbt_target),
    }
    proc = subprocess.run(
        [sys.executable, "-c", DAG_PROBE], env=env, capture_output=True, text=True, timeout=180
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, proc.stderr[-3000:]
    return json.loads(line[len("RESULT") :])


def test_crm_transform_declares_its_publication_deadline_and_builds_one_day_at_a_time(project_dags):
    assert project_dags["errors"] == {}
    transform = project_dags["crm_transform"]
    assert transform["max_active_runs"] == 1
    # 06:30 local on the day after the business day = logical date (00:00 local) + 30.5 h.
    assert transform["deadlines"] == [
        {
            "reference": "DagRunLogicalDateDeadline",
            "interval_s": (24 + 6.5) * 3600,
            "callback": "crm.alerts.deadline_missed",
            "name": "marts_published",
        },
        {
            "reference": "DagRunQueuedAtDeadline",
            "interval_s": 2 * 3600,  # CRM_PUBLISH_WITHIN=02:00 in the probe
            "callback": "crm.alerts.deadline_missed",
            "name": "marts_published_after_raw",
        },
    ]
    assert transform["serialized_deadlines"] == 2


def test_every_task_of_both_dags_fails_to_the_configured_notifiers(project_dags):
    for dag_id in ("crm_ingest", "crm_transform"):
        assert project_dags[dag_id]["failure_notifiers"] == ["CrmAppriseNotifier", "LogNotifier"], dag_id


def test_crm_ingest_runs_once_per_local_business_day(project_dags):
    ingest = project_dags["crm_ingest"]
    assert ingest["timetable"] == "CronDataIntervalTimetable"
    assert ingest["timezone"] == bank_timezone()  # the dbt var bank_timezone
    assert ingest["max_active_runs"] == 1


# --- under Airflow's scheduler models: the DAGs serialized into the metadata DB -------------

DEADLINE_ROWS = r"""
import datetime as dt, json
from zoneinfo import ZoneInfo
from sqlalchemy import select
from airflow.models.dagbag import DBDagBag
from airflow.models.deadline import Deadline
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState
from airflow.utils.types import DagRunTriggeredByType, DagRunType

tz = ZoneInfo(__import__("os").environ["AIRFLOW__CORE__DEFAULT_TIMEZONE"])
day = dt.datetime(2026, 1, 5, tzinfo=tz)  # a run of business day 2026-01-05: 00:00 local
out = {}
with create_session() as session:
    dag = DBDagBag().get_latest_version_of_dag("crm_transform", session=session)
    for kind, logical in (("dated", day), ("asset_triggered", None)):
        run = dag.create_dagrun(  # as the scheduler does; creating the run creates its deadline
            run_id=f"probe_{kind}", logical_date=logical,
            data_interval=(logical, logical + dt.timedelta(days=1)) if logical else None,
            run_after=logical or day + dt.timedelta(hours=25),
            run_type=DagRunType.MANUAL if logical else DagRunType.ASSET_TRIGGERED,
            triggered_by=DagRunTriggeredByType.TEST, state=DagRunState.QUEUED, session=session)
        session.flush()
        rows = session.scalars(select(Deadline).where(Deadline.dagrun_id == run.id))
        out[kind] = sorted(d.deadline_time.astimezone(tz).isoformat() for d in rows)
        out[kind + "_queued_at"] = run.queued_at.astimezone(tz).isoformat() if run.queued_at else None
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def serialized(airflow_env) -> dict[str, str]:
    """The project's DAGs parsed and stored as the DAG processor does (airflow dags reserialize)."""
    from crm.settings import get_settings

    env = {
        **airflow_env,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "CRM_DBT_TARGET_DIR": str(get_settings().dbt_target),
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "dags", "reserialize"], env=env, check=True, capture_output=True, timeout=300)
    return env


def test_the_deadline_of_a_business_day_is_0700_local_the_next_day(serialized):
    proc = subprocess.run(
        [sys.executable, "-c", DEADLINE_ROWS], env=serialized, capture_output=True, text=True, timeout=180
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, proc.stderr[-3000:]
    rows = json.loads(line[len("RESULT") :])
    at_seven = dt.datetime(2026, 1, 6, 7, tzinfo=ZoneInfo(bank_timezone()))  # bank's local time
    assert at_seven.isoformat() in rows["dated"]
    # Airflow 3 gives asset-triggered runs no logical date: only the queued-at deadline
    # (CRM_PUBLISH_WITHIN, default 3 h) applies to the daily runs (docs/alerts.md).
    queued = dt.datetime.fromisoformat(rows["asset_triggered_queued_at"])
    assert rows["asset_triggered"] == [(queued + dt.timedelta(hours=3)).isoformat()]


def test_airflow_backfill_makes_one_crm_ingest_run_per_local_day(serialized):
    airflow = str(Path(sys.executable).with_name("airflow"))
    proc = subprocess.run(
        [airflow, "backfill", "create", "--dag-id", "crm_ingest", "--from-date", "2026-01-05",
         "--to-date", "2026-01-07", "--dry-run"],
        env=serialized, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    stamps = re.findall(r"^\| (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d:\d\d) ", proc.stdout, re.MULTILINE)
    local = [dt.datetime.fromisoformat(s).astimezone(ZoneInfo(bank_timezone())) for s in stamps]
    assert [d.isoformat() for d in local] == [f"2026-01-0{n}T00:00:00+08:00" for n in (5, 6, 7)], proc.stdout[
        -2000:
    ]
