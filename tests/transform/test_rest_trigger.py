"""The real Airflow API server (`crm airflow`, on a non-default port): a daily run triggered
through the REST API with a token and the trigger form's conf runs to success.

About a minute: Airflow standalone starts its metadata database, scheduler and API server
on a free port (not 8080: the task runner must find the execution API there too).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from crm.airflow_api import api_client, free_port, wait_for
from crm.settings import get_settings

from .bank import DAYS, START, load_days


def _wait(predicate, seconds: float, what: str):
    try:
        return wait_for(predicate, seconds, what)
    except TimeoutError as err:
        pytest.fail(str(err))


def test_a_daily_run_triggered_through_the_rest_api_succeeds(built, db):
    day = START + dt_days(DAYS - 1)
    load_days(built, range(DAYS - 1, DAYS))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "crm.cli", "airflow", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            api = api_client(base, get_settings().airflow_home, timeout=30)
        except TimeoutError as err:
            pytest.fail(str(err))
        dags = _wait(lambda: {d["dag_id"] for d in api.get("/dags").json()["dags"]}, 120, "the DAGs")
        assert {"crm_ingest", "crm_transform"} <= dags
        assert api.get("/importErrors").json()["total_entries"] == 0
        api.patch("/dags/crm_transform", json={"is_paused": False}).raise_for_status()
        run = api.post(
            "/dags/crm_transform/dagRuns",
            json={"logical_date": None, "conf": {"business_day": day.isoformat()}},
        ).json()["dag_run_id"]
        state = _wait(
            lambda: (
                (s := api.get(f"/dags/crm_transform/dagRuns/{run}").json()["state"]) in ("success", "failed")
                and s
            ),
            600,
            "the run",
        )
        tasks = {
            t["task_id"]: t["state"]
            for t in api.get(f"/dags/crm_transform/dagRuns/{run}/taskInstances").json()["task_instances"]
        }
        assert state == "success", tasks
        assert tasks.pop("pass_on") == "skipped", "no other day queued behind this one"
        assert set(tasks.values()) == {"success"} and "gate_mart" in tasks and "publish" in tasks
        published = db.execute("select count(*) from dq.published_days where business_date = %s", (day,))
        assert published.fetchone()[0] == 1
    finally:
        os.killpg(server.pid, 9)
        server.wait(timeout=30)


def dt_days(n: int):
    import datetime as dt

    return dt.timedelta(days=n)
