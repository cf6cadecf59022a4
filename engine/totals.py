"""Totals over every session: those still shown and those retired from the table.

One accumulator, one way to count a session: `Tally.add` takes a session's figures (its
snapshot, or the cheaper `SessionFigures`) and `Latencies.add` its histograms, whether the
session is live or being retired, so the totals never depend on how many finished sessions
the engine keeps (`history`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from sluice.engine.histogram import Histogram, Percentiles
from sluice.engine.rates import RateMeter
from sluice.engine.session import Session, SessionFigures
from sluice.engine.snapshot import SESSION_STATES, SessionSnapshot, Totals

__all__ = ["RECENT_S", "Latencies", "Tally", "TotalsAccumulator"]

RECENT_S = 10.0  # the window of `Totals.queue_wait_10s`


@dataclass(slots=True)
class Tally:
    """Sums and maxima over session snapshots: cheap, recomputed for every snapshot."""

    sessions: int = 0
    states: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SESSION_STATES, 0))
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_lost: int = 0
    tokens_lost_cancelled: int = 0
    rate_in: float = 0.0
    rate_out: float = 0.0
    depth: int = 0
    buffered_bytes: int = 0
    memory_bytes: int = 0
    stall: float = 0.0
    high_water: int = 0

    def add(self, s: SessionSnapshot | SessionFigures) -> None:
        """Count one session."""
        self.sessions += 1
        self.states[s.state] = self.states.get(s.state, 0) + 1
        self.tokens_in += s.tokens_in
        self.tokens_out += s.tokens_out
        self.tokens_lost += s.tokens_lost
        if s.state == "cancelled":
            self.tokens_lost_cancelled += s.tokens_lost
        self.rate_in += s.rate_in
        self.rate_out += s.rate_out
        self.depth += s.depth
        self.buffered_bytes += s.buffered_bytes
        self.memory_bytes += s.memory_bytes
        self.stall += s.stall
        if s.high_water > self.high_water:
            self.high_water = s.high_water

    def copy(self) -> Tally:
        """An independent copy to add live sessions to."""
        return Tally(
            self.sessions,
            dict(self.states),
            self.tokens_in,
            self.tokens_out,
            self.tokens_lost,
            self.tokens_lost_cancelled,
            self.rate_in,
            self.rate_out,
            self.depth,
            self.buffered_bytes,
            self.memory_bytes,
            self.stall,
            self.high_water,
        )


@dataclass(slots=True)
class Latencies:
    """Merged latency histograms: the per-chunk ones merged, ttft and slot_wait one value
    per session (the session snapshot's own, so live and retired sessions count alike)."""

    queue_wait: Histogram = field(default_factory=Histogram)
    token_age: Histogram = field(default_factory=Histogram)
    consumer_call: Histogram = field(default_factory=Histogram)
    ttft: Histogram = field(default_factory=Histogram)
    slot_wait: Histogram = field(default_factory=Histogram)

    def add(self, session: Session, now: float) -> None:
        """Merge one session's histograms and record its ttft and slot_wait (the values its
        snapshot shows)."""
        self.queue_wait.merge(session.queue_wait)
        self.token_age.merge(session.token_age)
        self.consumer_call.merge(session.consumer_call)
        ttft = session.ttft()
        if ttft is not None:
            self.ttft.record(ttft)
        slot_wait = session.slot_wait(now)
        if slot_wait is not None:
            self.slot_wait.record(slot_wait)

    def copy(self) -> Latencies:
        """An independent copy to merge live sessions into."""
        fresh = Latencies()
        for mine, theirs in zip(fresh._all(), self._all(), strict=True):
            mine.merge(theirs)
        return fresh

    def by_name(self) -> dict[str, Histogram]:
        """The histograms by their glossary names."""
        names = ("queue_wait", "token_age", "consumer_call", "ttft", "slot_wait")
        return dict(zip(names, self._all(), strict=True))

    def summary(self) -> tuple[Percentiles, ...]:
        """queue_wait, token_age, consumer_call, ttft, slot_wait, summarised."""
        return tuple(h.summary() for h in self._all())

    def _all(self) -> tuple[Histogram, ...]:
        return (self.queue_wait, self.token_age, self.consumer_call, self.ttft, self.slot_wait)


class TotalsAccumulator:
    """Folds retired sessions in for good and merges the live ones on each call.

    Counts are exact at every call; the merged latency percentiles, which cost a pass over
    every live histogram, are refreshed at most every `refresh` seconds unless asked.
    """

    def __init__(self, refresh: float) -> None:
        self._refresh = refresh
        self._retired = Tally()
        self._retired_latencies = Latencies()
        self._cached: tuple[float, Latencies, tuple[Percentiles, ...]] | None = None
        # The merged queue_wait at each merge of the last RECENT_S seconds (the oldest kept
        # is the window's start): `since` the oldest is the window's own distribution.
        self._marks: deque[tuple[float, Histogram]] = deque()
        self._recent = Percentiles.empty()
        # The totals' own chunk counters, metered: a sum of per-session rates reads near zero
        # when sessions are short (a session's rate is 0 on its first sample and once ended).
        self._rate_in = RateMeter()
        self._rate_out = RateMeter()

    def retire(self, session: Session, now: float) -> None:
        """Count a session that leaves the engine's table, once and for good."""
        self._retired.add(session.figures(now))
        self._retired_latencies.add(session, now)

    def latencies(self, live: Iterable[Session], now: float, *, max_age: float = 0.0) -> Latencies:
        """The merged histograms (read them, do not change them): those of the last merge
        if it is at most `max_age` old, else merged afresh from the retired and `live`."""
        cached = self._cached
        if max_age > 0 and cached is not None and now - cached[0] <= max_age:
            return cached[1]
        return self._merge(live, now)[1]

    def _merge(
        self, live: Iterable[Session], now: float
    ) -> tuple[float, Latencies, tuple[Percentiles, ...]]:
        latencies = self._retired_latencies.copy()
        for session in live:
            latencies.add(session, now)
        self._cached = (now, latencies, latencies.summary())
        marks = self._marks
        while len(marks) > 1 and marks[1][0] <= now - RECENT_S:
            marks.popleft()
        start = marks[0][1] if marks else Histogram()
        self._recent = latencies.queue_wait.since(start).summary()
        marks.append((now, latencies.queue_wait.copy()))
        return self._cached

    def totals(
        self,
        live: Sequence[Session],
        figures: Iterable[SessionSnapshot | SessionFigures],
        now: float,
        *,
        fresh_latencies: bool = False,
    ) -> Totals:
        """Totals of the retired sessions and the `live` ones, counted from `figures` (one
        per live session: its snapshot, or its cheaper figures)."""
        tally = self._retired.copy()
        for counted in figures:
            tally.add(counted)
        cached = self._cached
        if fresh_latencies or cached is None or now - cached[0] >= self._refresh:
            cached = self._merge(live, now)
        queue_wait, token_age, consumer_call, ttft, slot_wait = cached[2]
        return Totals(
            sessions=tally.sessions,
            states=MappingProxyType(tally.states),
            tokens_in=tally.tokens_in,
            tokens_out=tally.tokens_out,
            tokens_lost=tally.tokens_lost,
            rate_in=self._rate_in.rate(now, tally.tokens_in),
            rate_out=self._rate_out.rate(now, tally.tokens_out),
            depth=tally.depth,
            buffered_bytes=tally.buffered_bytes,
            memory_bytes=tally.memory_bytes,
            high_water=tally.high_water,
            stall=tally.stall,
            queue_wait=queue_wait,
            token_age=token_age,
            consumer_call=consumer_call,
            ttft=ttft,
            slot_wait=slot_wait,
            tokens_lost_cancelled=tally.tokens_lost_cancelled,
            queue_wait_10s=self._recent,
        )
