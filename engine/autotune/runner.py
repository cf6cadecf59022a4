"""AutotuneRunner: the engine side of auto-tune. An asyncio task, started by the engine while
any `[autotune]` switch is on, that feeds the pure controllers from the engine's signals and
applies their moves through `Engine.set_knobs(..., reason=...)`, the call a slider makes.

Signals: throttles, timeouts and TTFT from the sessions' `SignalLog`; permits in use from the
limiters; consumer call times from each session's `consumer_call` histogram (count and sum,
read as differences between ticks, so a call costs nothing extra); bytes per chunk from the
live buffers. A switch turned on builds its controller from the knob's value now; turned off
(by hand: a person who moves the knob takes it over) drops it. The last move's reason and a
few minutes of (value, signal) history per knob are kept for the snapshot.

In a cluster only the auto-tune leader's runner moves knobs (engine/cluster/leader.py);
the others keep their history but feed no controller and move nothing. A node that becomes
leader rebuilds its controllers from the knobs' values then, so it starts from the value the
last leader left.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sluice.engine import settings as S
from sluice.engine.autotune.aimd import AimdLimit
from sluice.engine.autotune.buffer import BufferMove, BufferTuner
from sluice.engine.autotune.gradient import GradientLimit, quantile
from sluice.engine.autotune.move import Move
from sluice.engine.autotune.signals import OVERLOADS
from sluice.engine.autotune.switches import DRIVES
from sluice.engine.snapshot import AutoKnobSnapshot

if TYPE_CHECKING:
    from sluice.engine.engine import Engine

__all__ = ["HISTORY_SECONDS", "AutotuneRunner"]

HISTORY_SECONDS = 300.0  # how far back each knob's (value, signal) history reaches
POINT_EVERY = 1.0  # seconds between history points
TRIAL_TICK = 0.02  # seconds between ticks while a gradient raise is on trial (each request
# it lets through is judged as soon as its first token is in, and the next one let through)
DEFAULT_CHUNK_BYTES = 1024  # bytes per chunk assumed before a buffer held any
_FINAL = (-1, -1.0)  # a finished session whose calls were all counted
SIGNAL_NAMES = {
    "autotune.claude": "429s",
    "autotune.ollama": "ttft p75 ms",
    "autotune.maxsize": "call ms",
}


@dataclass
class _Track:
    """One auto knob's reason and history, kept across on/off."""

    switch: str
    knob: str
    reason: str | None = None
    moved_at: float | None = None
    points: collections.deque[tuple[float, float, float | None]] = field(
        default_factory=collections.deque
    )
    frozen: tuple[tuple[float, float, float | None], ...] = ()  # points as the last snapshot saw
    signal_count: int = 0  # overloads since the last point (claude)
    signal_samples: list[float] = field(default_factory=list)  # TTFTs or call means, since then


class AutotuneRunner:
    """Feeds the controllers from `engine` and applies their moves; see the module doc."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._clock = clock  # the engine's clock: every signal is stamped with it
        self._wall = wall
        cfg = engine.config
        self.window = cfg[S.AUTOTUNE_WINDOW_S]
        self.tick_every = min(max(self.window / 10, 0.02), 0.25)
        self._task: asyncio.Task[None] | None = None
        self._tracks: dict[str, _Track] = {}
        self._aimd: AimdLimit | None = None
        self._gradient: GradientLimit | None = None
        self._tuner: BufferTuner | None = None
        self._calls_seen: dict[str, tuple[int, float]] = {}
        self._chunk_bytes = 0
        self._last_point = -math.inf
        self._leading = True  # standalone: always; in a cluster: as of the last tick
        engine.on_knob_change(self._on_knob)

    # -- switching -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the runner's task runs."""
        return self._task is not None and not self._task.done()

    def any_on(self) -> bool:
        """True when some switch is on."""
        knobs = self._engine.knobs
        return any(knobs.get(switch) for switch in DRIVES)

    def start(self) -> asyncio.Task[None] | None:
        """Build the controllers of the switches on and start the task (from inside the
        running loop); returns the new task, None when none was needed."""
        for switch in DRIVES:
            if self._engine.knobs.get(switch):
                self._switch_on(switch)
        if self.running or not self.any_on():
            return None
        self._engine.signals.enabled = True
        self._task = asyncio.get_running_loop().create_task(self.run(), name="sluice-autotune")
        return self._task

    def _on_knob(self, name: str, value: Any) -> None:
        if name not in DRIVES:
            return
        if value:
            self._switch_on(name)
            self._engine.start_autotune()
        else:
            self._switch_off(name)

    def _switch_on(self, switch: str) -> None:
        cfg = self._engine.config
        knobs = self._engine.knobs
        track = self._track(switch)
        if switch == "autotune.claude" and self._aimd is None:
            low, high = cfg[S.AUTOTUNE_CLAUDE_MIN], cfg[S.AUTOTUNE_CLAUDE_MAX]  # ordered: config
            self._aimd = AimdLimit(
                knobs["limits.claude"],
                minimum=low,
                maximum=high,
                backoff=cfg[S.AUTOTUNE_BACKOFF],
                window=self.window,
            )
            self._bring_within(track, self._aimd.limit)
        elif switch == "autotune.ollama" and self._gradient is None:
            low, high = cfg[S.AUTOTUNE_OLLAMA_MIN], cfg[S.AUTOTUNE_OLLAMA_MAX]
            self._gradient = GradientLimit(
                knobs["limits.ollama"],
                minimum=low,
                maximum=high,
                window=self.window,
                headroom=cfg[S.AUTOTUNE_HEADROOM],
                tolerance=cfg[S.AUTOTUNE_TOLERANCE],
                baseline_every=cfg[S.AUTOTUNE_BASELINE_S],
                probe_limit=cfg[S.AUTOTUNE_PROBE_LIMIT],
            )
            self._bring_within(track, self._gradient.limit)
        elif switch == "autotune.maxsize" and self._tuner is None:
            self._tuner = BufferTuner(
                max(1, knobs["queue.maxsize"]),
                knobs["queue.batch_max"],
                target_buffer_ms=cfg[S.AUTOTUNE_TARGET_BUFFER_MS],
                hysteresis=cfg[S.AUTOTUNE_HYSTERESIS],
                window=self.window,
            )
            self._calls_seen = {}

    def leads(self) -> bool:
        """True when this runner may move knobs: always standalone, in a cluster only on
        the node that holds the auto-tune lease."""
        cluster = self._engine.cluster
        return cluster is None or cluster.leads_autotune

    def _led_by(self) -> str | None:
        """The leading node's name, on a cluster node that is not the leader."""
        cluster = self._engine.cluster
        if cluster is None or cluster.leads_autotune:
            return None
        return cluster.leader.leader if cluster.connected else None

    def _bring_within(self, track: _Track, limit: int) -> None:
        """A limit outside the auto bounds is brought inside them as the switch goes on."""
        if self._leading and self.leads() and self._engine.knob(track.knob) != limit:
            now = self._clock()
            self._apply(track, {track.knob: limit}, f"={limit}: within the auto bounds", now)

    def _switch_off(self, switch: str) -> None:
        if switch == "autotune.claude":
            self._aimd = None
        elif switch == "autotune.ollama":
            self._gradient = None
        elif switch == "autotune.maxsize":
            self._tuner = None

    def _track(self, switch: str) -> _Track:
        track = self._tracks.get(switch)
        if track is None:
            # Registry order, whatever order the switches were turned on in.
            track = _Track(switch, DRIVES[switch][0])
            self._tracks[switch] = track
            self._tracks = {s: self._tracks[s] for s in DRIVES if s in self._tracks}
        return track

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Tick until every switch is off (or the engine closes and cancels the task)."""
        try:
            while self.any_on():
                self.tick(self._clock())
                trial = self._gradient is not None and self._gradient.on_trial
                await asyncio.sleep(min(self.tick_every, TRIAL_TICK) if trial else self.tick_every)
        finally:
            self._engine.signals.enabled = False
            self._engine.signals.drain()

    def tick(self, now: float) -> None:
        """One round: feed every controller that is on what happened since the last tick,
        apply their moves, and add a history point now and then."""
        engine = self._engine
        leading, was_leading = self.leads(), self._leading
        self._leading = leading
        if leading and not was_leading:
            self._rebuild()
        if not leading:
            self._watch(now)
            return
        for signal in engine.signals.drain():
            if signal.backend == "claude" and signal.kind in OVERLOADS and self._aimd:
                track = self._track("autotune.claude")
                track.signal_count += 1
                move = self._aimd.overload(signal.at, signal.kind, signal.value)
                self._limit_move(track, move)
            elif signal.kind == "ttft" and signal.backend == "ollama" and self._gradient:
                ttft = signal.value
                if ttft is not None:  # a ttft report always carries its value
                    self._track("autotune.ollama").signal_samples.append(ttft)
                    self._gradient.sample(signal.at, ttft)
        if self._aimd is not None:
            self._remote_throttles(now)
            in_use = self._in_use("claude")
            self._limit_move(self._track("autotune.claude"), self._aimd.observe(now, in_use))
        if self._gradient is not None:
            self._gradient_look(now)
        if self._tuner is not None:
            self._tune_buffers(now)
        if now - self._last_point >= POINT_EVERY:
            self._last_point = now
            self._add_points(now)

    def _gradient_look(self, now: float) -> None:
        """Feed the gradient the requests still awaiting their first token, then let it
        look at the limiter. A raise lets a waiting session in at once (the limiter grants
        on resize), so it looks again straight away: a raise on trial holds before a second
        request goes out at the new level."""
        gradient = self._gradient
        assert gradient is not None
        track = self._track("autotune.ollama")
        gradient.pending(now, self._awaiting_first_token("ollama"))
        before = gradient.limit
        move = gradient.observe(now, self._in_use("ollama"))
        self._limit_move(track, move)
        if move is not None and move.value > before:
            self._limit_move(track, gradient.observe(now, self._in_use("ollama")))

    def _awaiting_first_token(self, backend: str) -> list[float]:
        """When each streaming session of `backend` sent its request, for those still
        without a first token (their TTFT is at least their age)."""
        return [
            s.sent_at
            for s in self._engine.sessions.values()
            if s.sent_at is not None
            and s.first_chunk_at is None
            and s.state == "streaming"
            and s.backend_name == backend
        ]

    def _rebuild(self) -> None:
        """Controllers anew from the knobs' values now (this node just became leader)."""
        for switch in DRIVES:
            if self._engine.knobs.get(switch):
                self._switch_off(switch)
                self._switch_on(switch)

    def _watch(self, now: float) -> None:
        """A tick of a node that does not lead: count the signals for the history only."""
        cluster = self._engine.cluster
        for signal in self._engine.signals.drain():
            if signal.backend == "claude" and signal.kind in OVERLOADS:
                self._track("autotune.claude").signal_count += 1
                if cluster is not None and self._aimd is not None:
                    cluster.leader.report()  # the leader's cut reacts to it
            elif signal.kind == "ttft" and signal.backend == "ollama" and signal.value:
                self._track("autotune.ollama").signal_samples.append(signal.value)
        if now - self._last_point >= POINT_EVERY:
            self._last_point = now
            self._add_points(now)

    def _remote_throttles(self, now: float) -> None:
        """The claude throttles other nodes of the cluster saw: one overload for the lot."""
        cluster = self._engine.cluster
        count = cluster.leader.take_remote() if cluster is not None else 0
        if count and self._aimd is not None:
            track = self._track("autotune.claude")
            track.signal_count += count
            self._limit_move(track, self._aimd.overload(now, _throttles_text(count)))

    def _in_use(self, backend: str) -> int:
        """Permits in use of `backend`: cluster-wide for a shared cap (the knob is its
        cluster-wide limit), else this node's."""
        limiter = self._engine.limiters[backend]
        cluster_in_use = getattr(limiter, "cluster_in_use", None)
        return limiter.in_use if cluster_in_use is None else max(cluster_in_use, limiter.in_use)

    def _limit_move(self, track: _Track, move: Move | None) -> None:
        if move is not None:
            self._apply(track, {track.knob: move.value}, move.reason(self._stamp(move.at)), move.at)

    def _tune_buffers(self, now: float) -> None:
        tuner = self._tuner
        assert tuner is not None
        engine = self._engine
        count, seconds = self._read_calls()
        track = self._track("autotune.maxsize")
        if count:
            track.signal_samples.append(seconds / count)
        tuner.calls(now, count, seconds)
        sessions = sum(lim.limit for lim in engine.limiters.values() if lim.in_use or lim.waiting)
        ceiling, reserved = self._ceiling()
        move = tuner.decide(
            now,
            sessions=max(1, sessions),
            bytes_per_chunk=self._chunk_bytes or DEFAULT_CHUNK_BYTES,
            ceiling=ceiling,
            reserved=reserved,
        )
        if move is not None:
            self._apply_buffers(track, move)

    def _apply_buffers(self, track: _Track, move: BufferMove) -> None:
        values = {"queue.maxsize": move.maxsize, "queue.batch_max": move.batch_max}
        self._apply(track, values, move.reason(), move.at)

    def _read_calls(self) -> tuple[int, float]:
        """Consumer calls since the last tick over every session, and their total seconds;
        also refreshes the bytes-per-chunk estimate from the live buffers."""
        count, seconds = 0, 0.0
        seen = self._calls_seen
        biggest = 0
        sessions = self._engine.sessions
        for session in sessions.values():
            before = seen.get(session.id, (0, 0.0))
            if before is _FINAL:
                continue
            hist = session.consumer_call
            if hist.count > before[0]:
                count += hist.count - before[0]
                seconds += hist.total - before[1]
            seen[session.id] = _FINAL if session.finished else (hist.count, hist.total)
            depth = session.buffer.depth
            if depth:
                biggest = max(biggest, math.ceil(session.buffer.buffered_bytes / depth))
        if len(seen) > 2 * len(sessions) + 100:
            self._calls_seen = {k: v for k, v in seen.items() if k in sessions}
        self._chunk_bytes = max(self._chunk_bytes, biggest)  # the safe side for the ceiling
        return count, seconds

    def _ceiling(self) -> tuple[int | None, int]:
        """The buffers' memory ceiling and what the rest of the process takes of it."""
        mib = self._engine.config[S.AUTOTUNE_MEMORY_CEILING_MB]
        if mib > 0:
            return int(mib * (1 << 20)), 0
        from sluice.engine.tuning import container_ceiling

        return container_ceiling()

    def _apply(self, track: _Track, values: dict[str, int], reason: str, at: float) -> None:
        self._engine.set_knobs(values, reason=reason)
        track.reason = reason
        track.moved_at = at

    def _stamp(self, at: float) -> str:
        """The wall-clock time of engine-clock moment `at`, as HH:MM:SS."""
        wall = self._wall() - (self._clock() - at)
        return time.strftime("%H:%M:%S", time.localtime(wall))

    def _add_points(self, now: float) -> None:
        knobs = self._engine.knobs
        for switch, track in self._tracks.items():
            if not knobs.get(switch):
                continue
            signal: float | None
            if switch == "autotune.claude":
                signal = float(track.signal_count)
            elif switch == "autotune.ollama" and track.signal_samples:
                signal = quantile(track.signal_samples) * 1000.0  # as the gradient judges
            elif track.signal_samples:
                signal = quantile(track.signal_samples, 0.5) * 1000.0
            else:
                signal = None
            track.signal_count = 0
            track.signal_samples = []
            track.points.append((now, float(knobs[track.knob]), signal))
            while track.points and track.points[0][0] < now - HISTORY_SECONDS:
                track.points.popleft()

    # -- views -----------------------------------------------------------------------------

    def last_reason(self, knob: str) -> str | None:
        """The reason of the last auto move of `knob` (a dotted name), or None."""
        for track in self._tracks.values():
            if knob in DRIVES[track.switch]:
                return track.reason
        return None

    def history(self, knob: str) -> tuple[tuple[float, float, float | None], ...]:
        """(time, value, signal) points of `knob` over the last minutes (empty if never auto)."""
        for track in self._tracks.values():
            if knob in DRIVES[track.switch]:
                return tuple(track.points)
        return ()

    def snapshot(self, now: float) -> tuple[AutoKnobSnapshot, ...]:
        """Every knob that is or was auto in this run, as frozen data."""
        knobs = self._engine.knobs
        led_by = self._led_by()
        out = []
        for switch, track in self._tracks.items():
            if len(track.frozen) != len(track.points) or (
                track.points and track.frozen and track.frozen[-1] != track.points[-1]
            ):
                track.frozen = tuple(track.points)
            baseline = retry = None
            if switch == "autotune.ollama" and self._gradient is not None:
                base = self._gradient.baseline
                baseline = None if base is None else base * 1000.0
            if switch == "autotune.claude" and self._aimd is not None:
                until = self._aimd.retry_until
                retry = None if until is None or until <= now else until - now
            out.append(
                AutoKnobSnapshot(
                    knob=track.knob,
                    switch=switch,
                    on=bool(knobs.get(switch)),
                    reason=track.reason,
                    moved_at=track.moved_at,
                    signal=SIGNAL_NAMES[switch],
                    baseline=baseline,
                    retry_after=retry,
                    points=track.frozen,
                    led_by=led_by,
                )
            )
        return tuple(out)


def _throttles_text(count: int) -> str:
    """The cause of a cut for throttles other nodes saw: `2 throttles on other nodes`."""
    return f"{count} throttle{'' if count == 1 else 's'} on other nodes"
