"""Small measuring helpers shared by the benchmark parts: RSS, CPU time, the machine."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Sequence
from typing import Any

import psutil

__all__ = ["child_env", "cpu_seconds", "machine", "machine_busy_seconds", "median", "rss"]

_PROCESS = psutil.Process()


def rss() -> int:
    """This process's resident set size in bytes now."""
    return int(_PROCESS.memory_info().rss)


def cpu_seconds() -> float:
    """User plus system CPU seconds this process has used."""
    times = _PROCESS.cpu_times()
    return float(times.user + times.system)


def machine_busy_seconds() -> float:
    """CPU seconds all cores together have spent busy (not idle, not waiting on I/O)."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def median(values: Sequence[float]) -> float:
    """The median (the middle of an odd count, the mean of the two middles otherwise)."""
    return float(statistics.median(values))


def machine() -> dict[str, Any]:
    """Cores, Python, platform and the load average when the run started."""
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(terse=True),
        "machine_memory": int(psutil.virtual_memory().total),
        "load_average": [round(x, 2) for x in load],
    }


def child_env() -> dict[str, str]:
    """This environment, with the repository root first on PYTHONPATH, for a child Python
    that must import `sluice` from the same tree."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env
