"""Engine: the facade that owns sessions, one limiter per backend, the knobs and the sampler.

Everything a UI or a user's workload needs goes through here: start sessions, turn knobs
(applied to running sessions at once), take frozen snapshots, cancel, shut down. It never
imports the UI.
"""

from __future__ import annotations

import asyncio
import collections
import difflib
import functools
import itertools
import json
import math
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

from sluice.engine import settings as S
from sluice.engine.autotune.runner import AutotuneRunner
from sluice.engine.autotune.signals import SignalLog
from sluice.engine.autotune.switches import manual_overrides
from sluice.engine.backends.base import Backend
from sluice.engine.backends.demo import DemoModel
from sluice.engine.backends.registry import (
    BUILDERS,
    UnknownBackend,
    build_backend,
    close_backends,
)
from sluice.engine.cluster.options import cluster_options
from sluice.engine.config import Config
from sluice.engine.consumers import Consumer, SleepConsumer, close_consumer, make_consumer
from sluice.engine.histogram import Histogram
from sluice.engine.limiter import AdjustableLimiter, Limiter
from sluice.engine.process import ProcessSampler
from sluice.engine.session import SHUTDOWN_GRACE, SUMMARY_REFRESH, Session
from sluice.engine.settings import (
    BACKENDS,
    SETTINGS,
    Setting,
    SettingError,
    limit_setting,
    live_settings,
)
from sluice.engine.snapshot import (
    BackendSnapshot,
    EngineSnapshot,
    SessionDetail,
)
from sluice.engine.totals import TotalsAccumulator

if TYPE_CHECKING:
    from sluice.engine.cluster.link import ClusterLink

__all__ = ["Engine", "KnobError"]


class KnobError(ValueError):
    """A knob was given a value outside its range; the message says what is allowed."""


def _spelled(value: object, limit: int = 60) -> str:
    """`value` as a knob error quotes it: in JSON (`true`, `null`, `"32"`), the spelling the
    control API was sent and config.toml uses, not Python's repr; at most `limit` characters."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Engine:
    """Runs back-pressured streaming sessions; use as `async with Engine(config) as engine:`.

    `history` caps how many finished sessions stay in snapshots (None keeps all); older ones
    are folded into the totals so long continuous runs stay cheap to watch. `shutdown_grace`
    is how long a cancelled session's consumer, stream and stream close each get to stop
    before the session is abandoned (so `aclose`, `q` and Ctrl+C stay bounded).
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        consumer: Consumer | None = None,
        backends: Mapping[str, Backend] | None = None,
        history: int | None = 500,
        clock: Callable[[], float] = time.monotonic,
        shutdown_grace: float = SHUTDOWN_GRACE,
    ) -> None:
        if not (math.isfinite(shutdown_grace) and shutdown_grace >= 0):
            raise ValueError(f"shutdown_grace must be seconds >= 0, got {shutdown_grace!r}")
        self.config = config or Config()
        cfg = self.config
        self._clock = clock
        self._knob_values: dict[str, Any] = {s.name: cfg[s] for s in live_settings()}
        self._knob_listeners: list[Callable[[str, Any], None]] = []
        self._end_listeners: list[Callable[[Session], None]] = []
        self.demo = DemoModel(
            rate=cfg[S.DEMO_RATE],
            ttft_ms=cfg[S.DEMO_TTFT_MS],
            tokens=cfg[S.DEMO_TOKENS],
            seed=cfg[S.DEMO_SEED],
        )
        self.backends: dict[str, Backend] = {"demo": self.demo}
        if backends:
            self.backends.update(backends)
        # [cluster]: shared backends' caps are leased from Redis (engine/cluster/).
        self.cluster: ClusterLink | None = None
        if (options := cluster_options(cfg)) is not None:
            from sluice.engine.cluster.link import ClusterLink

            self.cluster = ClusterLink(options, self)
        self.limiters: dict[str, Limiter] = {
            name: self._new_limiter(name, self._knob_values[f"limits.{name}"]) for name in BACKENDS
        }
        # The engine closes only what it built: a consumer or backend handed in by the
        # caller stays the caller's to close.
        self._owned_consumers: list[Consumer] = []
        if consumer is None:
            consumer = make_consumer(
                cfg[S.CONSUMER_KIND], delay_ms=cfg[S.CONSUMER_DELAY_MS], path=cfg[S.CONSUMER_PATH]
            )
            self._owned_consumers.append(consumer)
        self.consumer = consumer
        self._owned_backends: list[Backend] = []
        self.sessions: dict[str, Session] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._numbers = itertools.count(1)
        self._history = history
        self._totals = TotalsAccumulator(refresh=SUMMARY_REFRESH)
        self._finished: collections.deque[str] = collections.deque()  # ids, in end order
        self.sampler = ProcessSampler(clock=clock)
        self._background: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._close_done = asyncio.Event()
        self.shutdown_grace = shutdown_grace
        self.dropped_queued = 0  # sessions removed before they got a slot (nothing received)
        # Auto-tune (engine/autotune/): what sessions report, and the task that reads it while
        # an [autotune] switch is on.
        self.signals = SignalLog()
        self.autotune = AutotuneRunner(self, clock=clock)
        # While set_knobs tells its listeners: the reason of an auto-tune move, else None.
        self.change_reason: str | None = None

    def _new_limiter(self, backend: str, limit: int) -> Limiter:
        """A shared backend's cap in a cluster counts across nodes; any other is local."""
        if self.cluster is not None and backend in self.cluster.shared:
            return self.cluster.limiter(backend, limit)
        return AdjustableLimiter(limit)

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def start(self) -> None:
        """Start the background sampler, the cluster link, and auto-tune if a switch is on
        (call from inside the running loop)."""
        if self.cluster is not None:
            self.cluster.start()
        if not self._background:
            self._background.append(
                asyncio.get_running_loop().create_task(self.sampler.run(), name="sluice-sampler")
            )
            self.start_autotune()

    def start_autotune(self) -> None:
        """Start the auto-tune task if a switch is on and it is not running (the engine
        calls this as it starts and whenever a switch goes on)."""
        if not self._background or self._closed:
            return
        task = self.autotune.start()
        if task is not None:
            self._background = [t for t in self._background if not t.done()]
            self._background.append(task)

    async def aclose(self) -> None:
        """Cancel every session and background task, wait for them, close consumers.

        Bounded: a session whose consumer or stream ignores its cancel is abandoned after
        `shutdown_grace` seconds (failed, its error saying so) instead of holding shutdown.
        A second caller waits for the first one's shutdown to finish.
        """
        if self._closed:
            await self._close_done.wait()
            return
        self._closed = True
        try:
            tasks = list(self._tasks.values()) + self._background
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self._background.clear()
            if self.cluster is not None:  # after the sessions: their permits go back first
                await self.cluster.aclose()
            for consumer in self._owned_consumers:
                await close_consumer(consumer)
            await close_backends(self._owned_backends)
        finally:
            self._close_done.set()

    @property
    def closed(self) -> bool:
        """True once `aclose` ran."""
        return self._closed

    # -- sessions --------------------------------------------------------------------------

    def add_backend(self, backend: Backend, limit: int | None = None) -> None:
        """Register a backend (a user's own, say) and give it a limiter if it has none."""
        self.backends[backend.name] = backend
        if backend.name not in self.limiters:
            setting = limit_setting(backend.name)
            try:
                value = setting.coerce(setting.default if limit is None else limit)
            except SettingError as exc:
                raise KnobError(f"{setting.name} = {_spelled(limit)}: {exc}") from None
            self.limiters[backend.name] = AdjustableLimiter(value)
            self._knob_values[setting.name] = value
        elif limit is not None:
            self.set_knob(f"limits.{backend.name}", limit)

    def add_session(
        self,
        prompt: str,
        backend: str | Backend = "demo",
        *,
        consumer: Consumer | None = None,
        session_id: str | None = None,
    ) -> Session:
        """Create and start one session; it waits for its backend's limiter first."""
        if self._closed:
            raise RuntimeError("the engine is closed")
        if not isinstance(backend, str):
            if backend.name not in self.backends:
                self.add_backend(backend)
            backend = backend.name
        if backend not in self.backends:
            self._build_backend(backend)
        session_id = session_id or f"{backend}-{next(self._numbers):04d}"
        if session_id in self.sessions:
            raise ValueError(f"a session with id {session_id!r} already exists")
        session = Session(
            session_id,
            prompt,
            self.backends[backend],
            self.limiters[backend],
            consumer or self.consumer,
            maxsize=self._knob_values["queue.maxsize"],
            batch_max=self._get_batch_max,
            clock=self._clock,
            consumer_timeout=self.config[S.CONSUMER_TIMEOUT_S],
            grace=self.shutdown_grace,
            signals=self.signals,
        )
        self.sessions[session_id] = session
        task = asyncio.get_running_loop().create_task(session.run(), name=f"sluice-{session_id}")
        self._tasks[session_id] = task
        self._idle.clear()
        task.add_done_callback(functools.partial(self._on_session_end, session_id))
        return session

    def _build_backend(self, name: str) -> None:
        """Build a real backend (claude, ollama) from the config on first use.

        Raises UnknownBackend for an unknown name and MissingCredentials when its key is not set
        in the environment; the engine closes what it built in `aclose`.
        """
        if name not in BUILDERS:
            known = ", ".join(sorted({*self.backends, *BUILDERS}))
            raise UnknownBackend(f"no backend named {name!r}; known: {known}")
        built = build_backend(name, self.config)
        self.backends[name] = built
        self._owned_backends.append(built)

    def add_demo_sessions(self, count: int) -> list[Session]:
        """Start `count` demo sessions with deterministic prompts."""
        started = []
        for _ in range(count):
            number = next(self._numbers)
            started.append(
                self.add_session(f"demo prompt {number}", "demo", session_id=f"demo-{number:04d}")
            )
        return started

    def drop_queued(self) -> int:
        """Remove every session still waiting for a slot (nothing of theirs was received);
        returns how many were dropped."""
        queued = [s.id for s in self.sessions.values() if s.state == "queued"]
        for session_id in queued:
            self._drop_unstarted(session_id)
        return len(queued)

    def withdraw(self, session_id: str) -> bool:
        """Remove a session that is still waiting for a slot (nothing of it was received, so
        nothing is lost); False when it is unknown or has started."""
        session = self.sessions.get(session_id)
        if session is None or session.state != "queued":
            return False
        self._drop_unstarted(session_id)
        return True

    def _drop_unstarted(self, session_id: str) -> None:
        task = self._tasks.pop(session_id, None)
        if self.sessions.pop(session_id, None) is not None:
            self.dropped_queued += 1
        if task is not None:
            task.cancel()
        if not self._tasks:
            self._idle.set()

    def on_session_end(self, listener: Callable[[Session], None]) -> Callable[[], None]:
        """Call `listener(session)` when a session ends (done, failed or cancelled; not one
        dropped while queued); returns the unsubscriber. A listener that raises is ignored, so
        a watcher's bug disturbs no session."""
        self._end_listeners.append(listener)
        return functools.partial(self._end_listeners.remove, listener)

    def _on_session_end(self, session_id: str, _task: object = None) -> None:
        self._tasks.pop(session_id, None)
        if not self._tasks:
            self._idle.set()
        session = self.sessions.get(session_id)
        if session is None:
            return  # withdrawn before it started
        if self._history is not None:
            self._finished.append(session_id)
        for listener in list(self._end_listeners):
            try:
                listener(session)
            except Exception:
                pass  # a watcher's bug must not stop the engine's bookkeeping
        self._prune_history()

    def _prune_history(self) -> None:
        """Fold the oldest finished sessions into the totals beyond `history` of them."""
        history = self._history
        if history is None:
            return
        while len(self._finished) > history:
            session = self.sessions.pop(self._finished.popleft(), None)
            if session is not None:
                self._totals.retire(session, self._clock())

    async def wait_idle(self) -> None:
        """Wait until no session is running (in continuous mode that may be never)."""
        while self._tasks:
            await self._idle.wait()
            await asyncio.sleep(0)

    def cancel(self, session_id: str) -> bool:
        """Cancel one session; True if it was running."""
        task = self._tasks.get(session_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    def cancel_all(self) -> int:
        """Cancel every running session; returns how many were running."""
        count = 0
        for task in list(self._tasks.values()):
            if not task.done():
                task.cancel()
                count += 1
        return count

    # -- knobs -----------------------------------------------------------------------------
    # Every live knob is declared once, in engine/settings.py; these methods look it up,
    # validate, store the value and let the setting apply it to the running sessions.

    def _knob_setting(self, name: str) -> Setting[Any]:
        """The live setting called `name` (a limit of an added backend included)."""
        setting = SETTINGS.get(name)
        if setting is not None and setting.live:
            return setting
        table, _, backend = name.partition(".")
        if table == "limits" and backend in self.limiters:
            return limit_setting(backend)
        known = [*self._knob_values]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
        raise KnobError(f"{name}: no such knob; {hint}")

    def knob(self, name: str) -> Any:
        """The current value of the live knob `name` (a dotted config name)."""
        self._knob_setting(name)
        return self._knob_values[name]

    @property
    def knobs(self) -> Mapping[str, Any]:
        """Every live knob's current value, by dotted config name (a read-only copy)."""
        return MappingProxyType(dict(self._knob_values))

    def knob_settings(self) -> dict[str, Setting[Any]]:
        """Every live knob's declaration, by dotted config name, in display order."""
        return {name: self._knob_setting(name) for name in self._knob_values}

    def set_knob(self, name: str, value: object) -> Any:
        """Set one live knob; applied to running sessions at once. Returns the stored value;
        KnobError (nothing changed) when the name or the value is not allowed."""
        return self.set_knobs({name: value})[name]

    def set_knobs(
        self, values: Mapping[str, object], *, reason: str | None = None
    ) -> dict[str, Any]:
        """Set several knobs at once: every value is checked first, so a bad one changes
        nothing; then each is applied in order. Returns the stored values.

        `reason` marks an auto-tune move (why it was made). Without one the change is a
        person's (a slider, `PATCH /v1/knobs`, a workload): setting a knob that auto-tune
        drives switches its `autotune.*` switch off in the same call (manual at that value).
        """
        checked: dict[str, tuple[Setting[Any], Any]] = {}
        for name, value in values.items():
            setting = self._knob_setting(name)
            try:
                checked[name] = (setting, setting.coerce(value))
            except SettingError as exc:
                raise KnobError(f"{name} = {_spelled(value)}: {exc}") from None
        if reason is None:
            for switch in manual_overrides(checked, self._knob_values):
                checked[switch] = (SETTINGS[switch], False)
        self.change_reason = reason
        try:
            for name, (setting, value) in checked.items():
                if setting.apply is not None:
                    setting.apply(self, value)
                self._knob_values[name] = value
                for listener in list(self._knob_listeners):
                    listener(name, value)
        finally:
            self.change_reason = None
        return {name: value for name, (_, value) in checked.items()}

    def on_knob_change(self, listener: Callable[[str, Any], None]) -> Callable[[], None]:
        """Call `listener(name, value)` after every knob change; returns the unsubscriber."""
        self._knob_listeners.append(listener)
        return functools.partial(self._knob_listeners.remove, listener)

    def resize_buffers(self, maxsize: int) -> None:
        """Resize every live session's buffer now (how `queue.maxsize` is applied)."""
        for session in self.sessions.values():
            if not session.finished:
                session.buffer.resize(maxsize)

    def set_consumer_delay(self, delay_ms: float) -> None:
        """The built-in sleep consumer's time per call (how `consumer.delay_ms` is applied)."""
        if isinstance(self.consumer, SleepConsumer):
            self.consumer.delay_ms = float(delay_ms)

    def _get_batch_max(self) -> int:
        return int(self._knob_values["queue.batch_max"])

    @property
    def delay_applies(self) -> bool:
        """True when the delay knob drives the consumer (the built-in sleep consumer)."""
        return isinstance(self.consumer, SleepConsumer)

    @property
    def consumer_in_use(self) -> bool:
        """True when some session (finished ones count) runs on the engine's own consumer,
        not one of its own; a kept-running demo counts once its first session started."""
        return any(s.consumer is self.consumer for s in self.sessions.values())

    def tuned_config(self) -> Config:
        """The config with the knobs' current values, ready to save (limits of backends the
        config does not know, a workload's own, are not config keys and are left out)."""
        return self.config.with_values(
            {name: value for name, value in self._knob_values.items() if name in SETTINGS}
        )

    # -- views -----------------------------------------------------------------------------

    def snapshot(self, *, sessions: bool = True) -> EngineSnapshot:
        """Everything worth showing, as frozen data; cheap enough for 10 Hz at 1,000 sessions.

        `sessions=False` leaves the per-session tuple empty (the totals still cover every
        session): for a display of totals only, about a fifth of the cost (3 ms instead of
        14 ms at 1,000 sessions) and no thousand objects kept for the garbage collector.
        """
        now = self._clock()
        kept = tuple(s.snapshot(now) for s in self.sessions.values()) if sessions else ()
        live = list(self.sessions.values())
        counted = kept if sessions else (s.figures(now) for s in live)
        totals = self._totals.totals(live, counted, now, fresh_latencies=not self._tasks)
        backends = tuple(
            BackendSnapshot(name, lim.limit, lim.in_use, lim.waiting)
            for name, lim in self.limiters.items()
        )
        return EngineSnapshot(
            taken_at=now,
            sessions=kept,
            backends=backends,
            knobs=self.knobs,
            process=self.sampler.snapshot(),
            totals=totals,
            cluster=self.cluster.snapshot() if self.cluster is not None else None,
            autotune=self.autotune.snapshot(now),
        )

    def detail(self, session_id: str) -> SessionDetail | None:
        """The detail view of one session, or None if it is unknown."""
        session = self.sessions.get(session_id)
        return session.detail() if session is not None else None

    def latency_histograms(self, max_age: float = 0.0) -> dict[str, Histogram]:
        """Every session's latency histograms merged, retired sessions included:
        `queue_wait`, `token_age`, `consumer_call` (per chunk or call), `ttft` and
        `slot_wait` (one value per session that has one). With `max_age`, the ones the last
        snapshot's totals were merged from if they are at most that old (read them, do not
        change them): a /metrics scrape right after a snapshot merges nothing again."""
        now = self._clock()
        latencies = self._totals.latencies(self.sessions.values(), now, max_age=max_age)
        return latencies.by_name()
