"""`make bench`'s ingest section on a small bank: it measures the real loader, a plain
COPY of the same files, and the floor of the work the loader must do (nothing asserted
about speed: that is for the bench's report, not a unit test)."""

from __future__ import annotations

from crm.ingest.bench_day import bench_ingest


def test_ingest_bench_reports_loader_plain_copy_and_floor_per_feed(warehouse, tmp_path):
    report = bench_ingest(300, tmp_path)
    feeds = report["feeds"]
    assert {"core_customers", "core_accounts", "mobile_events", "online_sessions"} <= set(feeds)
    for name, entry in feeds.items():
        assert entry["method"] == "copy", name  # a clean generated day takes the clean path
        # Seconds are rounded to milliseconds: a tiny file may show 0.0.
        assert entry["rows"] >= 0 and entry["loader_s"] > 0, name
        assert entry["plain_copy_s"] >= 0 and entry["floor_s"] >= 0, name
    assert report["total_rows"] == sum(e["rows"] for e in feeds.values())
    assert report["floor_s"] > 0 and report["floor_vs_copy_all_feeds"] > 0
    assert report["loader_vs_floor"] > 0
    memory = report["loader_memory"]
    for run in ("file_clean", "file_rows", "file_x10_clean", "file_x10_rows"):
        assert memory[run]["peak_rss_mib"] > 0, run
    assert (
        memory["file_x10_clean"]["rows"]
        == 10 * memory["file_clean"]["rows"]
        == 10 * feeds["core_customers"]["rows"]
    )
    assert (memory["file_x10_clean"]["method"], memory["file_x10_rows"]["method"]) == ("copy", "rows")
    faulty = report["faulty_day"]
    assert faulty["quarantined"] > 0 and faulty["files_by_method"].get("rows", 0) > 0
