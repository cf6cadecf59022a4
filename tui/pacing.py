"""How often the app samples the engine: as often as the screen can show it, and within a
small share of a core however many sessions one sample walks.

A sample of the totals walks every session (about 10 ms at 1,000 sessions), so a fixed 5 Hz
took 5% of a core for sparklines whose columns each span seconds, and kept the event loop
busy in front of key presses. `Pace` lets a periodic job run when its period has passed and
the last run's cost, spread over the time since, stays within `share` of a core.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["SHARE", "Pace"]

SHARE = 0.01  # of one core: 10 ms of sampling allows one sample a second


class Pace:
    """When a periodic job is due: `due(period)`; time a run with `with pace.run(): ...`."""

    def __init__(self, share: float = SHARE, clock: Callable[[], float] = time.perf_counter):
        if share <= 0:
            raise ValueError(f"share must be > 0, got {share}")
        self.share = share
        self.clock = clock
        self._last = -math.inf  # when the last run started
        self._cost = 0.0  # how long it took

    def since(self) -> float:
        """Seconds since the last run started (infinite before the first)."""
        return self.clock() - self._last

    def due(self, period: float) -> bool:
        """True when `period` seconds have passed since the last run, and so many that its
        cost is at most `share` of them."""
        return self.since() >= max(period, self._cost / self.share)

    @contextmanager
    def run(self) -> Iterator[None]:
        """Time one run of the job."""
        start = self.clock()
        try:
            yield
        finally:
            self._last = start
            self._cost = self.clock() - start
