"""crm.memory.peak_rss_mib: the benchmarks' peak-memory figure."""

from __future__ import annotations

import subprocess
import sys


def test_the_peak_grows_with_what_the_process_touches():
    """In a fresh process: a test worker's earlier peak (a high-water mark) may already be
    above what it holds now, so 256 MiB more need not raise it by 200 there."""
    code = (
        "from crm.memory import peak_rss_mib; before = peak_rss_mib(); "
        "block = bytearray(256 * 2**20); print(before, peak_rss_mib())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    before, after = map(float, out.split())
    assert after >= before + 200, (before, after)


def test_a_child_of_a_big_process_reports_its_own_peak():
    """ru_maxrss would report the parent's 256+ MiB in the child (Linux keeps it across fork
    and exec); the loader-memory bench starts its runs from the bench process that way."""
    block = bytearray(256 * 2**20)
    code = "from crm.memory import peak_rss_mib; print(peak_rss_mib())"
    child = float(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )
    assert 0 < child < 150, child
    del block
