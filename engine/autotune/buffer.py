"""BufferTuner: `maxsize` and `batch_max` calibrated continuously as the workload runs.

The rules are `sluice calibrate`'s (engine/tuning.py `recommend`): `maxsize = ceil(
target_buffer_ms / mean consumer call ms)`, lowered so that `sessions x maxsize x bytes per
chunk` fits under the memory ceiling, and `batch_max = maxsize`. Here the mean call time is
the one measured over the last window instead of a timing run. Hysteresis keeps the value
from flapping: a move is made only when the recommendation differs from the current value
by more than `hysteresis` (a fraction); a ceiling breach is corrected at once, any time.
Pure: the caller passes every sample's time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sluice.engine.tuning import ConsumerTiming, recommend

__all__ = ["BufferMove", "BufferTuner"]


@dataclass(frozen=True, slots=True)
class BufferMove:
    """New `maxsize` and `batch_max`, with the step and cause in words (as `Move`)."""

    maxsize: int
    batch_max: int
    change: str
    cause: str
    at: float

    def reason(self) -> str:
        """The move for a person: `x0.10: call 100 ms, target 500 ms`."""
        return f"{self.change}: {self.cause}"


class BufferTuner:
    """Continuous calibration of one engine's buffer knobs."""

    def __init__(
        self,
        maxsize: int,
        batch_max: int,
        *,
        target_buffer_ms: float = 500.0,
        hysteresis: float = 0.25,
        window: float = 2.0,
    ) -> None:
        if not (target_buffer_ms > 0 and math.isfinite(target_buffer_ms)):
            raise ValueError(f"target_buffer_ms must be > 0, got {target_buffer_ms!r}")
        if not 0 <= hysteresis < 1:
            raise ValueError(f"hysteresis must be in [0, 1), got {hysteresis!r}")
        if not (window > 0 and math.isfinite(window)):
            raise ValueError(f"window must be seconds > 0, got {window!r}")
        self.maxsize = maxsize
        self.batch_max = batch_max
        self.target_buffer_ms = target_buffer_ms
        self.hysteresis = hysteresis
        self.window = window
        self.last_call: float | None = None  # the last window's mean call time, seconds
        self._window_start: float | None = None
        self._calls = 0
        self._seconds = 0.0

    def calls(self, at: float, count: int, seconds: float) -> None:
        """`count` consumer calls that took `seconds` together ended by `at`."""
        if self._window_start is None:
            self._window_start = at
        if count > 0 and seconds >= 0 and math.isfinite(seconds):
            self._calls += count
            self._seconds += seconds

    def decide(
        self,
        at: float,
        *,
        sessions: int,
        bytes_per_chunk: int,
        ceiling: int | None = None,
        reserved: int = 0,
    ) -> BufferMove | None:
        """At `at`: the move the last window calls for, if any. `sessions` is how many
        buffers can be full at once (the sum of the limits in use), `ceiling` the memory
        ceiling in bytes (None: none) of which `reserved` is taken by the rest."""
        if self._window_start is None:
            self._window_start = at
        breach = self._fit_ceiling(at, sessions, bytes_per_chunk, ceiling, reserved)
        if breach is not None or at - self._window_start < self.window:
            return breach
        calls, seconds = self._calls, self._seconds
        self._window_start = at
        self._calls, self._seconds = 0, 0.0
        if calls == 0:
            return None
        mean = seconds / calls
        self.last_call = mean
        # The continuous feed has sums, not each call: the mean is all the rule reads.
        timing = ConsumerTiming(1, calls, calls, mean, mean, mean, mean, bytes_per_chunk)
        rec = recommend(
            timing,
            sessions=max(1, sessions),
            target_buffer_ms=self.target_buffer_ms,
            memory_ceiling=ceiling,
            reserved_bytes=reserved,
        )
        target = rec.maxsize
        over = rec.ceiling_maxsize is not None and self.maxsize > max(1, rec.ceiling_maxsize)
        if target == self.maxsize:
            return None
        if not over and abs(target - self.maxsize) <= self.hysteresis * self.maxsize:
            return None
        cause = f"call {mean * 1000:.3g} ms, target {self.target_buffer_ms:g} ms"
        if rec.limited_by_memory:
            cause += ", memory ceiling"
        return self._move(target, rec.batch_max, cause, at)

    def _fit_ceiling(
        self, at: float, sessions: int, bytes_per_chunk: int, ceiling: int | None, reserved: int
    ) -> BufferMove | None:
        """A ceiling breach (more sessions, bigger chunks) is corrected at every look, not
        once a window: memory comes before calm."""
        if ceiling is None:
            return None
        room = (ceiling - reserved) // (max(1, sessions) * max(1, bytes_per_chunk))
        fit = max(1, room)
        if self.maxsize <= fit:
            return None
        return self._move(fit, min(self.batch_max, fit), "memory ceiling", at)

    def _move(self, maxsize: int, batch_max: int, cause: str, at: float) -> BufferMove:
        ratio = maxsize / self.maxsize if self.maxsize else 0.0
        change = f"x{ratio:.2f}" if self.maxsize else f"={maxsize}"
        self.maxsize, self.batch_max = maxsize, batch_max
        return BufferMove(maxsize, batch_max, change, cause, at)
