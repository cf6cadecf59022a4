"""SignalLog: what sessions and backends report for auto-tune, stamped, until the runner
drains it: throttles (`429`, `529`, `overloaded`, with the server's retry-after), `timeout`,
and `ttft` measured from the request being sent. Collects only while a runner reads it, and
never more than `MAX_EVENTS`, so an engine without auto-tune pays one attribute test."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["MAX_EVENTS", "OVERLOADS", "Signal", "SignalLog"]

MAX_EVENTS = 100_000
# The kinds that mean "too much" for the loss-based (AIMD) law.
OVERLOADS = frozenset(("429", "529", "overloaded", "timeout"))


class Signal(NamedTuple):
    """One report: on `backend`, `kind` happened at `at` (engine clock); `value` is the
    retry-after in seconds for a throttle, the TTFT in seconds for `ttft`, else None."""

    backend: str
    kind: str
    at: float
    value: float | None


class SignalLog:
    """Reports waiting for the runner; `enabled` while a runner drains it."""

    __slots__ = ("_events", "enabled")

    def __init__(self) -> None:
        self.enabled = False
        self._events: list[Signal] = []

    def add(self, backend: str, kind: str, at: float, value: float | None = None) -> None:
        """Keep one report (dropped when nobody reads them or too many are waiting)."""
        if self.enabled and len(self._events) < MAX_EVENTS:
            self._events.append(Signal(backend, kind, at, value))

    def drain(self) -> list[Signal]:
        """Every report since the last drain, oldest first."""
        events, self._events = self._events, []
        return events
