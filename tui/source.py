"""Where the app's data comes from: anything with `snapshot()` and `detail(id)`.

The running `Engine` is one such source. `FrozenSource` is another: it replays prepared
snapshots, so tests and screenshots show exactly the same screen every time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from sluice.engine.snapshot import EngineSnapshot, SessionDetail

__all__ = ["FrozenSource", "SnapshotSource"]


class SnapshotSource(Protocol):
    """What the app reads: frozen snapshots of the whole engine and of one session."""

    def snapshot(self, *, sessions: bool = True) -> EngineSnapshot:
        """Everything the main screen shows; with `sessions=False` the per-session tuple may
        be left empty (the totals still count every session), which is cheaper."""
        ...

    def detail(self, session_id: str) -> SessionDetail | None:
        """The detail screen's data for one session, or None if it is unknown."""
        ...


class FrozenSource:
    """Replays `snapshots` one per call, then keeps returning the last one."""

    def __init__(
        self,
        snapshots: Sequence[EngineSnapshot],
        details: Mapping[str, SessionDetail] | None = None,
    ) -> None:
        if not snapshots:
            raise ValueError("FrozenSource needs at least one snapshot")
        self._snapshots = list(snapshots)
        self._details = dict(details or {})
        self._next = 0

    @property
    def exhausted(self) -> bool:
        """True once every snapshot was handed out."""
        return self._next >= len(self._snapshots)

    def snapshot(self, *, sessions: bool = True) -> EngineSnapshot:
        """The next prepared snapshot (the last one forever after), sessions included."""
        index = min(self._next, len(self._snapshots) - 1)
        self._next += 1
        return self._snapshots[index]

    def detail(self, session_id: str) -> SessionDetail | None:
        """The prepared detail of `session_id`, if any."""
        return self._details.get(session_id)
