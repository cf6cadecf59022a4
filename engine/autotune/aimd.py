"""AimdLimit: a loss-based concurrency cap (additive increase, multiplicative decrease).

For a backend that says "too much" outright (Claude's 429 rate_limit_error, 529 or an
`overloaded_error` before or during a stream, or a request that timed out): an overload
multiplies the limit by `backoff`, at most once per `window` seconds, so one burst of errors
costs one cut; a window in which the limit was reached (every permit in use) and nothing
failed adds 1. A `retry-after` from the server is honoured: no increase before it has
passed, and `retry_until` says when that is. Pure: the caller passes every sample's time.
"""

from __future__ import annotations

import math

from sluice.engine.autotune.move import Move, check_bounds

__all__ = ["AimdLimit"]


class AimdLimit:
    """The AIMD law for one backend's limit, within [minimum, maximum]."""

    def __init__(
        self,
        limit: int,
        *,
        minimum: int = 1,
        maximum: int = 64,
        backoff: float = 0.9,
        window: float = 2.0,
    ) -> None:
        check_bounds(minimum, maximum)
        if not 0 < backoff < 1:
            raise ValueError(f"backoff must be between 0 and 1, got {backoff!r}")
        if not (window > 0 and math.isfinite(window)):
            raise ValueError(f"window must be seconds > 0, got {window!r}")
        self.minimum = minimum
        self.maximum = maximum
        self.backoff = backoff
        self.window = window
        self.limit = min(max(limit, minimum), maximum)
        self.retry_until: float | None = None  # the latest retry-after a server asked for
        self.overloads = 0  # every overload fed, cut or not
        self._window_start: float | None = None
        self._reached = False  # the limit was reached in this window
        self._failed = False  # something failed in this window
        self._last_cut: float | None = None

    @property
    def step_text(self) -> str:
        """The cut in words: `-10%` for a backoff of 0.9."""
        return f"-{round((1 - self.backoff) * 100):g}%"

    def overload(self, at: float, cause: str, retry_after: float | None = None) -> Move | None:
        """The backend refused or timed out at `at` (`cause`: `429`, `529`, `overloaded`,
        `timeout`); `retry_after` is the server's wait in seconds, if it gave one. Cuts the
        limit unless a cut happened less than a window ago."""
        self.overloads += 1
        self._start(at)
        self._failed = True
        if retry_after is not None and retry_after > 0:
            until = at + retry_after
            if self.retry_until is None or until > self.retry_until:
                self.retry_until = until
        if self._last_cut is not None and at - self._last_cut < self.window:
            return None
        self._last_cut = at
        new = max(self.minimum, math.floor(self.limit * self.backoff))
        if new == self.limit:
            return None
        self.limit = new
        return Move(new, self.step_text, cause, at, stamped=True)

    def observe(self, at: float, in_use: int) -> Move | None:
        """A look at the limiter at `at` (`in_use` permits held). Closes the window when it
        is over (+1 if it reached the limit without a failure); the look itself belongs to
        the window it opens."""
        self._start(at)
        assert self._window_start is not None
        move = self._close(at) if at - self._window_start >= self.window else None
        if in_use >= self.limit:
            self._reached = True
        return move

    def _close(self, at: float) -> Move | None:
        grow = self._reached and not self._failed
        waiting_out = self.retry_until is not None and at < self.retry_until
        self._window_start = at
        self._reached = False
        self._failed = False
        if not grow or waiting_out or self.limit >= self.maximum:
            return None
        self.limit += 1
        return Move(self.limit, "+1", "limit reached, no errors", at)

    def _start(self, at: float) -> None:
        if self._window_start is None:
            self._window_start = at
