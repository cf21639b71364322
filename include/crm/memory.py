"""The peak memory of this process, for the benchmarks."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mib() -> float:
    """This process's peak resident set size, MiB.

    Read from ``VmHWM`` where Linux has it: ``ru_maxrss`` carries a parent's peak across
    fork and exec, so a fresh child process started by a big one would report the parent's.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
