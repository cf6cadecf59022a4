"""The continuous demo: keeps `demo.sessions` demo sessions running on an engine.

A workload like any user's (`sluice monitor`), built only on the engine's public API: it
listens for session ends and for changes of the `demo.sessions` knob, and starts or
withdraws demo sessions to match. The engine itself holds no demo policy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sluice.engine import settings as S
from sluice.engine.engine import Engine
from sluice.engine.session import Session

__all__ = ["ContinuousDemo"]


class ContinuousDemo:
    """Keeps the engine's `demo.sessions` knob worth of demo sessions going.

    `start()` tops up at once and after every session end or knob change; `stop()` stops
    replacing sessions (running ones finish normally). Raising the knob starts sessions at
    once; lowering it withdraws the newest ones still waiting for a slot.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._unsubscribe: list[Callable[[], None]] = []

    @property
    def running(self) -> bool:
        """True between `start()` and `stop()`."""
        return bool(self._unsubscribe)

    def start(self, sessions: int | None = None) -> None:
        """Keep `sessions` (default: the knob's value) demo sessions running."""
        if sessions is not None:
            self.engine.set_knob(S.DEMO_SESSIONS.name, sessions)
        if not self.running:
            self._unsubscribe = [
                self.engine.on_session_end(self._session_ended),
                self.engine.on_knob_change(self._knob_changed),
            ]
        self.top_up()

    def stop(self) -> None:
        """Stop replacing demo sessions that end."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    def top_up(self) -> None:
        """Start or withdraw demo sessions so that the knob's count are active."""
        engine = self.engine
        if engine.closed or not self.running:
            return
        active = [
            s for s in engine.sessions.values() if s.backend_name == "demo" and not s.finished
        ]
        missing = int(engine.knob(S.DEMO_SESSIONS.name)) - len(active)
        if missing > 0:
            engine.add_demo_sessions(missing)
        elif missing < 0:
            # Withdraw the newest sessions that have not started; running ones finish.
            queued = [s for s in reversed(active) if s.state == "queued"][:-missing]
            for session in queued:
                engine.withdraw(session.id)

    def _session_ended(self, _session: Session) -> None:
        self.top_up()

    def _knob_changed(self, name: str, _value: Any) -> None:
        if name == S.DEMO_SESSIONS.name:
            self.top_up()
