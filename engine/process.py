"""ProcessSampler: process-wide figures (RSS, CPU, the memory limit, event-loop lag).

It runs as one small task on the engine's loop. Loop lag is how late a short sleep wakes up:
the time the loop was too busy to run anything else, the figure that tells whether the UI
and the sessions still get their turns. Its p99 comes two ways: over the whole run (for a
run's summary) and over the last LAG_WINDOW seconds (for a live screen, where a figure that
only ever grows would hide that a spike has passed).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

import psutil

from sluice.engine.cgroup import memory_limit
from sluice.engine.histogram import Histogram
from sluice.engine.snapshot import ProcessSnapshot

__all__ = ["LAG_WINDOW", "ProcessSampler", "forget_before", "recent_p99"]

LAG_WINDOW = 10.0  # seconds of loop-lag samples behind `loop_lag_p99_10s`


def forget_before(samples: deque[tuple[float, float]], cutoff: float) -> None:
    """Drop the `(time, value)` samples taken at or before `cutoff` (they are in time order)."""
    while samples and samples[0][0] <= cutoff:
        samples.popleft()


def recent_p99(samples: deque[tuple[float, float]], now: float, window: float) -> float | None:
    """Nearest-rank p99 of the `(time, value)` samples taken in the last `window` seconds
    (older ones are dropped from `samples`)."""
    forget_before(samples, now - window)
    if not samples:
        return None
    ordered = sorted(value for _, value in samples)
    return ordered[max(1, math.ceil(0.99 * len(ordered))) - 1]


class ProcessSampler:
    """Samples RSS and CPU at most every `refresh` seconds and measures loop lag."""

    def __init__(
        self,
        interval: float = 0.1,
        refresh: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.refresh = refresh
        self._clock = clock
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # prime: the first call always returns 0.0
        self._machine_memory = psutil.virtual_memory().total
        self._memory_limit = memory_limit()
        self._lag = Histogram()
        self._recent_lag: deque[tuple[float, float]] = deque()
        self._last_lag = 0.0
        self._sampled_at = -1.0e18
        self._rss = self._process.memory_info().rss
        self._peak_rss = self._rss
        self._cpu = 0.0

    async def run(self) -> None:
        """Measure loop lag forever (cancel to stop)."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval)
            self.record_lag(max(0.0, loop.time() - started - self.interval))
            self._sample()

    def record_lag(self, lag: float) -> None:
        """Count one loop-lag measurement (seconds), stamped with the sampler's clock."""
        self._last_lag = lag
        self._lag.record(lag)
        now = self._clock()
        self._recent_lag.append((now, lag))
        forget_before(self._recent_lag, now - LAG_WINDOW)

    def _sample(self, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._sampled_at < self.refresh:
            return
        self._sampled_at = now
        try:
            self._rss = self._process.memory_info().rss
            self._cpu = self._process.cpu_percent(None)
        except psutil.Error:
            return
        if self._rss > self._peak_rss:
            self._peak_rss = self._rss

    @property
    def lag_histogram(self) -> Histogram:
        """Every loop-lag sample since the start (or the last `reset_lag`); read-only use."""
        return self._lag

    def reset_lag(self) -> None:
        """Forget loop-lag history (between benchmark phases)."""
        self._lag = Histogram()
        self._recent_lag.clear()
        self._last_lag = 0.0

    def snapshot(self) -> ProcessSnapshot:
        """The latest figures; samples RSS and CPU now if the last sample is stale."""
        self._sample()
        return ProcessSnapshot(
            rss=self._rss,
            cpu_percent=self._cpu,
            memory_limit=self._memory_limit,
            machine_memory=self._machine_memory,
            loop_lag=self._last_lag,
            loop_lag_p99=self._lag.quantile(0.99),
            loop_lag_p99_10s=recent_p99(self._recent_lag, self._clock(), LAG_WINDOW),
            peak_rss=self._peak_rss,
        )
