"""`make bench` keeps every section's last figures: a run of one section replaces only it."""

from __future__ import annotations

import json

from crm.bench import merged


def test_a_run_of_one_section_keeps_the_others_with_their_time(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(
        json.dumps(
            {"when": "2026-11-01T00:00:00+00:00", "machine": {"cpus": 2}, "gates": {"a": 1}, "ml": {"b": 2}}
        )
    )
    report = {"when": "2026-11-30T00:00:00+00:00", "machine": {"cpus": 2}, "gates": {"a": 3}}
    out = merged(path, report)
    assert out["gates"] == {"a": 3, "when": "2026-11-30T00:00:00+00:00"}
    assert out["ml"] == {"b": 2, "when": "2026-11-01T00:00:00+00:00"}, "kept, dated by its own run"
    assert out["when"] == report["when"]
    assert merged(tmp_path / "none.json", report)["gates"]["a"] == 3
