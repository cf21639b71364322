"""`make bench`'s gates section on a small bank: the gates' cost on a day past the raw
gate's warm-up, as a share of that day's load (figures reported, speed not asserted)."""

from __future__ import annotations

from crm.quality.bench import bench_gates, gates_table


def test_gates_bench_reports_load_gates_docs_and_slowest_suites(warehouse, tmp_path):
    report = bench_gates(300, tmp_path, days=7)
    assert report["customers"] == 300 and report["days"] == 7
    assert report["rows_last_day"] > 0
    assert len(report["load_s_each_day"]) == 7 and len(report["history_raw_gate_s"]) == 6
    for key in ("load_s", "raw_gate_s", "recon_gate_s", "docs_s", "gates_vs_load", "context_s"):
        assert report[key] is not None and report[key] >= 0, key
    assert report["gx_import_s_fresh_process"] > 0 and report["gx_context_s_fresh_process"] >= 0
    # Whether the gates pass is reported, not asserted here (tests/quality/test_gates.py).
    assert isinstance(report["raw_gate_passed"], bool) and isinstance(report["alarms"], list)
    assert report["raw_suites_s"] >= 0 and report["recon_suites_s"] >= 0
    assert report["suites"] == 15 and report["expectations"] > 0  # 14 raw feeds + recon.breaks
    slowest = report["slowest_suites"]
    assert len(slowest) == 5
    assert [s["seconds"] for s in slowest] == sorted((s["seconds"] for s in slowest), reverse=True)
    assert all(s["suite"].startswith(("raw.", "recon.")) and s["expectations"] > 0 for s in slowest)
    table = gates_table(report)
    assert "(raw + recon) / load" in table and slowest[0]["suite"] in table
    # The bench's GX results and Data Docs stay in its work folder.
    assert (tmp_path / "gates_home" / report["docs_index"]).exists()
