"""The raw gate's day profile (crm.quality.profile, dq.raw_profiles), on a small generated bank.

The fault kinds are in test_gates.py; here: a re-run replaces the day's figures, a gate run
for one feed is judged on that feed alone, and a repeat is found whatever the line order.
"""

from __future__ import annotations

import datetime as dt
import json
import math

from crm.quality.gate import run_gate
from crm.settings import get_settings

from .test_gates import START, bank

FEED = "core_balances"


def _figures() -> dict[str, list[dict]]:
    root = get_settings().expectations_dir / "gx" / "expectations" / "raw"
    return json.loads((root / "profile.json").read_text())["meta"]["figures"]


def test_a_rerun_replaces_the_days_figures_and_records_each_as_a_result(tmp_path, warehouse, db, monkeypatch):
    bank(tmp_path, monkeypatch, 2, seed=5)
    day = START + dt.timedelta(days=1)
    first = run_gate("raw", day, docs=False)
    second = run_gate("raw", day, docs=False)
    figures = _figures()
    assert first.success and second.success
    profiled = db.execute(
        "select feed, count(*) from dq.raw_profiles where business_date = %s group by feed", (day,)
    ).fetchall()
    assert dict(profiled) == {feed: len(f) for feed, f in figures.items()}, "one row per figure, not two"
    results = db.execute(
        "select r.subject, count(*) from dq.validation_runs r join dq.expectation_results e using (run_id)"
        " where r.gate = 'raw' and r.business_date = %s group by r.subject",
        (day,),
    ).fetchall()
    assert dict(results) == {feed: 2 * len(f) for feed, f in figures.items()}, "each run is on record"
    volume = db.execute(
        "select observed, (select rows_loaded from audit.load_log where feed = %s and business_date = %s"
        " and status = 'loaded') from dq.raw_profiles where business_date = %s and feed = %s"
        " and check_name = 'raw.volume'",
        (FEED, day, day, FEED),
    ).fetchone()
    assert volume[0] == volume[1] > 0


def test_a_gate_run_for_one_feed_judges_that_feed_only(tmp_path, warehouse, db, monkeypatch):
    bank(tmp_path, monkeypatch, 2, seed=5)
    day = START + dt.timedelta(days=1)
    # another feed's figure, failed and critical, already in the day's profile
    db.execute(
        "insert into dq.raw_profiles (business_date, feed, check_name, kind, severity, observed,"
        " min_value, max_value, judged) values (%s, 'atm_events', 'raw.volume', 'row_count', 'critical',"
        " 0, 10, 20, true)",
        (day,),
    )
    db.commit()
    alone = run_gate("raw", day, subjects=[FEED], docs=False)
    assert alone.success and [r.subject for r in alone.runs] == [FEED]
    everyone = run_gate("raw", day, docs=False)  # re-profiles atm_events: its real volume
    assert everyone.success


def test_yesterdays_rows_in_another_order_are_a_stale_repeat(tmp_path, warehouse, monkeypatch):
    from crm.generator import generate
    from tests.ingest.test_generated_bank import load_all

    landing = tmp_path / "landing"
    generate(customers=300, start=START, days=2, seed=5, out=landing, truth=tmp_path / "truth")
    first, second = START, START + dt.timedelta(days=1)
    lines = (landing / FEED / first.isoformat() / "balances.csv").read_text().splitlines(keepends=True)
    # the same rows as yesterday, in another order: another file (another SHA-256), same content
    (landing / FEED / second.isoformat() / "balances.csv").write_text(lines[0] + "".join(reversed(lines[1:])))
    monkeypatch.setenv("CRM_LANDING_DIR", str(landing))
    get_settings.cache_clear()
    assert not load_all(landing, 2)
    run_gate("raw", first, docs=False)
    out = run_gate("raw", second, docs=False)
    failed = {(r.subject, o.check) for r in out.runs for o in r.failed}
    assert failed == {(FEED, "raw.stale_repeat")}, out.summary()


def test_a_scale_is_the_geometric_mean_magnitude_and_the_roll_forward_sums_are_exact(
    tmp_path, warehouse, db, monkeypatch
):
    bank(tmp_path, monkeypatch, 2, seed=5)
    day = START + dt.timedelta(days=1)
    assert run_gate("raw", day, docs=False).success
    rows = db.execute(
        "select ledger_balance, _load_id from raw.core_balances where _business_date = %s", (day,)
    ).fetchall()
    logs = [math.log(abs(v)) for v, _ in rows if v != 0]
    scale = db.execute(
        "select observed from dq.raw_profiles where business_date = %s and feed = %s"
        " and check_name = 'raw.scale:ledger_balance'",
        (day, FEED),
    ).fetchone()[0]
    assert math.isclose(scale, math.exp(sum(logs) / len(logs)), rel_tol=1e-5)
    total, load_id = db.execute(
        "select total, load_id from dq.day_totals where business_date = %s and feed = %s", (day, FEED)
    ).fetchone()
    assert total == sum(v for v, _ in rows), "to the cent, not a float"
    assert load_id == max(load for _, load in rows)
