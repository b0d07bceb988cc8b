"""What a benchmark figure was measured with: the command, the machine, the thread count and
the versions that decide it (`textgym.versions.installed_versions`). Every entry of
results.json carries one under ``measured``."""

from __future__ import annotations

import os
import platform
import resource
import shlex
import sys
import time

from textgym.versions import installed_versions
from textgym_agents.training.rundir import VERSIONED


def provenance(threads: int, device: str = "cpu", distributions: tuple[str, ...] = ()) -> dict:
    """The ``measured`` record of a figure this process just measured.

    :param distributions: what the benchmark uses beyond a run's `VERSIONED` (TRL, Ray).
    """
    return {
        "command": shlex.join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": len(os.sched_getaffinity(0)),
        "torch_threads": threads,
        "device": device,
        "peak_rss_mb_this_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "versions": installed_versions((*VERSIONED, *distributions)),
    }
