"""Generator throughput and memory: a quick smoke test, and the 1M-customer scale run (slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from crm.generator.bench import bench


def test_bench_reports_throughput_and_peak_memory(tmp_path):
    report = bench(500, 2, tmp_path / "bench")
    assert report["rows"] > 0 and report["rows_per_s"] > 0 and report["peak_rss_mib"] > 0
    assert not (tmp_path / "bench").exists(), "bench cleans up after itself"


@pytest.mark.slow
def test_a_million_customers_for_a_day_stay_under_2_gib(tmp_path):
    # A fresh interpreter, so the peak RSS is the generator's alone.
    code = (
        "import json, pathlib, sys; from crm.generator.bench import bench; "
        "print(json.dumps(bench(1_000_000, 1, pathlib.Path(sys.argv[1]))))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "big")], check=True, capture_output=True)
    report = json.loads(out.stdout.decode().strip().splitlines()[-1])
    assert report["peak_rss_mib"] < 2048, report
    assert report["customer_days_per_s"] > 5_000, report
