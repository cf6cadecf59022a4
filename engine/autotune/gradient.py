"""GradientLimit: a delay-based concurrency cap for a server that queues instead of refusing.

Ollama does not say "too much": it queues, and the queue shows as a longer time to first
token (TTFT, measured from the request being sent, never the whole response: a response's
length is the prompt's property, not the server's load). Each window, its TTFT p75 is
compared with a baseline (the first window's, pulled a quarter of the way towards each
lower one since, re-measured periodically):
`limit x clamp(baseline x (1 + tolerance) / p75, 0.5, 1) + headroom`, the headroom added
only in a window that reached the limit (a cap nobody presses on is not raised) and showed
no queue, and never back up to a level that queued within the last 30 windows: so the
limit settles just under the capacity instead of keeping a standing queue of `headroom`
requests, and probes above it once every 30 windows (each probe queues a few requests).
A raise is judged early: once `min_samples` requests sent after it show a queue, it is cut
at that look, not at the window's end (a step above the capacity then queues a few
requests, not a window of them). Every `baseline_every` seconds the baseline is measured
afresh: one window at `probe_limit`, whose requests find no queue, then the limit returns
to where it was. Pure: the caller passes every sample's time.
"""

from __future__ import annotations

import math

from sluice.engine.autotune.move import Move, check_bounds

__all__ = ["QUANTILE", "GradientLimit", "quantile"]

GRADIENT_FLOOR = 0.5  # one window never cuts the limit by more than half
BASELINE_STEP = 0.25  # how far a lower window's TTFT p75 pulls the baseline down
HOLD_WINDOWS = 30  # windows the limit stays under a level that queued before trying it again


QUANTILE = 0.75  # the TTFT each window is judged by: p75 (the median misses a queue of one)


def quantile(values: list[float], q: float = QUANTILE) -> float:
    """The nearest-rank `q` quantile of `values` (not empty)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


class GradientLimit:
    """The gradient law for one backend's limit, within [minimum, maximum]."""

    def __init__(
        self,
        limit: int,
        *,
        minimum: int = 1,
        maximum: int = 64,
        window: float = 2.0,
        headroom: float = 1.0,
        tolerance: float = 0.1,
        baseline_every: float = 60.0,
        probe_limit: int | None = None,
        min_samples: int = 3,
    ) -> None:
        check_bounds(minimum, maximum)
        for name, value in (("window", window), ("baseline_every", baseline_every)):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be seconds > 0, got {value!r}")
        if not (headroom >= 0 and tolerance >= 0 and min_samples >= 1):
            raise ValueError("headroom and tolerance must be >= 0, min_samples >= 1")
        self.minimum = minimum
        self.maximum = maximum
        self.window = window
        self.headroom = headroom
        self.tolerance = tolerance
        self.baseline_every = baseline_every
        self.probe_limit = min(max(probe_limit or minimum, minimum), maximum)
        self.min_samples = min_samples
        self._estimate = float(min(max(limit, minimum), maximum))
        self.baseline: float | None = None  # seconds: the TTFT p75 with no queue
        self.last_median: float | None = None  # the last closed window's TTFT p75
        self._baseline_at: float | None = None  # when the baseline was last measured
        self._probe: tuple[float, int] | None = None  # (started at, the limit to go back to)
        self._window_start: float | None = None
        self._samples: list[float] = []
        self._reached = False
        # After a raise: when it came in, and the TTFTs of requests sent since (judged early).
        self._raised_at: float | None = None
        self._fresh: list[float] = []
        # (limit, when) of the last window whose TTFT showed a queue: the limit does not grow
        # back to that level for HOLD_WINDOWS windows (a noisy window locks nothing for long).
        self._queued: tuple[int, float] | None = None

    @property
    def limit(self) -> int:
        """The limit now (the probe's while a baseline is being measured)."""
        return self._probe_level() if self._probe is not None else self._value()

    @property
    def probing(self) -> bool:
        """True while a window at `probe_limit` measures the baseline."""
        return self._probe is not None

    def _probe_level(self) -> int:
        """A probe's limit: `probe_limit`, or the limit in force if lower (a probe measures
        an unqueued TTFT, so it never raises the concurrency)."""
        assert self._probe is not None
        return min(self.probe_limit, self._probe[1])

    def _value(self) -> int:
        return min(max(math.floor(self._estimate + 1e-9), self.minimum), self.maximum)

    def sample(self, at: float, ttft: float) -> None:
        """A first token arrived at `at`, `ttft` seconds after its request was sent. During a
        probe, requests sent before it began (queued behind the old limit) do not count."""
        if not (ttft >= 0 and math.isfinite(ttft)):
            return
        self._start(at)
        if self._probe is not None and at - ttft < self._probe[0]:
            return
        self._samples.append(ttft)
        if self._raised_at is not None and at - ttft >= self._raised_at:
            self._fresh.append(ttft)

    def observe(self, at: float, in_use: int) -> Move | None:
        """A look at the limiter at `at`; closes the window when it is over and enough
        samples came in, and returns the limit's move if it changed. The look itself
        belongs to the window it opens."""
        self._start(at)
        assert self._window_start is not None
        move = None
        if self._raise_queued():
            move = self._close(at, quantile(self._fresh))
        elif at - self._window_start >= self.window and len(self._samples) >= self.min_samples:
            move = self._close(at, quantile(self._samples))
        if in_use >= self.limit:
            self._reached = True
        return move

    def _raise_queued(self) -> bool:
        """True once `min_samples` requests sent after a raise show a queue (their p75 over
        the tolerance): the raise is cut then, not at the window's end, so a step above the
        capacity queues a few requests instead of a whole window of them."""
        if self._raised_at is None or self.baseline is None:
            return False
        if len(self._fresh) < self.min_samples:
            return False
        return quantile(self._fresh) > self.baseline * (1 + self.tolerance)

    def _close(self, at: float, middle: float) -> Move | None:
        """The window is over (or a raise queued): `middle`, its TTFT p75, moves the limit
        (or ends or starts a probe)."""
        reached = self._reached
        self._window_start = at
        self._samples = []
        self._reached = False
        self._raised_at = None
        self._fresh = []
        self.last_median = middle
        if self._probe is not None:
            return self._end_probe(at, middle)
        if self._baseline_at is not None and at - self._baseline_at >= self.baseline_every:
            return self._start_probe(at)
        if self.baseline is None:
            self.baseline = middle
            self._baseline_at = at
        elif middle < self.baseline:
            # Lowered a quarter of the way per window, not to the lowest p75 at once: one
            # lucky window would make every later one look queued.
            self.baseline += BASELINE_STEP * (middle - self.baseline)
        before = self._value()
        gradient = 1.0 if middle <= 0 else self.baseline * (1 + self.tolerance) / middle
        gradient = min(max(gradient, GRADIENT_FLOOR), 1.0)
        if gradient < 1.0:
            self._queued = (before, at)  # the level a queue showed at
        elif self._queued is not None and at - self._queued[1] >= HOLD_WINDOWS * self.window:
            self._queued = None  # long enough ago: the server may have more room now
        grow = reached and gradient == 1.0
        estimate = self._estimate * gradient + (self.headroom if grow else 0.0)
        if grow and self._queued is not None:
            estimate = min(estimate, self._queued[0] - 1e-6)  # not back to a queueing level
        self._estimate = min(max(estimate, float(self.minimum)), float(self.maximum))
        after = self._value()
        if after == before:
            return None
        ms = f"TTFT p75 {middle * 1000:.0f} ms vs baseline {self.baseline * 1000:.0f} ms"
        if after > before:
            self._raised_at = at
            return Move(after, f"+{after - before}", f"{ms}, limit reached", at)
        return Move(after, f"x{gradient:.2f}", ms, at)

    def _start_probe(self, at: float) -> Move | None:
        self._probe = (at, self._value())
        if self._probe_level() == self._probe[1]:
            return None
        return Move(self._probe_level(), "probe", "re-measuring the TTFT baseline", at)

    def _end_probe(self, at: float, middle: float) -> Move | None:
        assert self._probe is not None
        back, level = self._probe[1], self._probe_level()
        self._probe = None
        self.baseline = middle
        self._baseline_at = at
        self._queued = None  # a fresh baseline: probe upward again
        if back == level:
            return None
        return Move(back, "back", f"baseline re-measured: {middle * 1000:.0f} ms", at)

    def _start(self, at: float) -> None:
        if self._window_start is None:
            self._window_start = at
