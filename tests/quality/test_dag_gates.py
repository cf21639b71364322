"""The gates inside the real crm_ingest DAG (airflow dags test): a critical failure stops the day."""

from __future__ import annotations

import datetime as dt

from crm.orchestrate import run_dag
from crm.quality.gate import run_gate

from .test_gates import START, bank

DAYS = 8
LAST = START + dt.timedelta(days=DAYS - 1)


def test_a_stale_repeat_fails_gate_raw_and_the_day_goes_no_further(tmp_path, warehouse, db, monkeypatch):
    _, ledger = bank(tmp_path, monkeypatch, DAYS, seed=5, faults="stale_repeat=1")
    repeated = next(e for e in ledger if e.get("kind") == "stale_repeat")
    for d in range(1, DAYS - 1):
        day = START + dt.timedelta(days=d)
        assert run_gate("raw", day, docs=False).success and run_gate("recon", day, docs=False).success
    db.execute("delete from audit.load_log where business_date = %s", (LAST,))  # the DAG loads it
    outcome = run_dag("crm_ingest", LAST)
    assert not outcome.ok, "a critical failure fails the run"
    failed = db.execute(
        """select r.subject, e.check_name, e.severity from dq.validation_runs r
        join dq.expectation_results e using (run_id)
        where r.business_date = %s and r.gate = 'raw' and not e.success""",
        (LAST,),
    ).fetchall()
    assert (repeated["feed"], "raw.stale_repeat", "critical") in failed
    recon = db.execute(
        "select count(*) from dq.validation_runs where gate = 'recon' and business_date = %s", (LAST,)
    ).fetchone()[0]
    assert recon == 0, "gate_recon (and the asset crm_transform waits for) did not run"
