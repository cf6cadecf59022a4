"""RateMeter: items per second over a sliding window, sampled when someone asks.

Nothing is recorded per chunk: the meter keeps a few (time, running count) samples taken at
snapshot time and divides the difference across the window, so its cost is per snapshot.
"""

from __future__ import annotations

import sys

__all__ = ["RateMeter"]

_SAMPLE_BYTES = sys.getsizeof((0.0, 0)) + sys.getsizeof(0.0)  # a (time, count) tuple


class RateMeter:
    """Rate of a monotonically growing counter over the last `window` seconds."""

    __slots__ = ("_samples", "resolution", "window")

    def __init__(self, window: float = 5.0, resolution: float = 0.5) -> None:
        self.window = window
        self.resolution = resolution
        # A short list (window / resolution samples at most): smaller than a deque's block.
        self._samples: list[tuple[float, int]] = []

    def rate(self, now: float, count: int) -> float:
        """Record `count` at `now` (at most once per `resolution`) and return the rate."""
        samples = self._samples
        if not samples or now - samples[-1][0] >= self.resolution:
            samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            del samples[0]
        first_t, first_n = samples[0]
        span = now - first_t
        if span <= 0:
            return 0.0
        return (count - first_n) / span

    def nbytes(self) -> int:
        """Bytes the meter holds."""
        return sys.getsizeof(self._samples) + len(self._samples) * _SAMPLE_BYTES
