"""RaiseTrial: a raise of a delay-based limit judged on the first requests it lets through,
before the rest follow.

A server that queues above its capacity C says so only through time: a request sent at
C + 1 waits for a slot, and that shows one TTFT later at the earliest. Left at C + 1 for
that long, every request sent meanwhile queues too (a chain: each waits for the next slot to
free). So a raise from L to L + 1 lets one request through, holds the limit at L while that
request is judged (a request older than the threshold without its first token is judged
already: its TTFT can only be longer), and keeps L + 1 only if none of the requests sent at
L + 1 showed a queue. Above C that queues one request, not a TTFT's worth of them.

Pure: the caller passes every time; which requests count is decided by when they were sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

__all__ = ["SEND_SLACK", "RaiseTrial", "Request", "Verdict"]

# A request sent this long (a share of the threshold) after the hold was let through before
# it: a permit is granted at once, the request goes out a few event-loop turns later.
SEND_SLACK = 0.25
_EARLY = 1e-9  # a send time recomputed as `at - ttft` may come out a hair early
_SAME = 1e-6  # a first token for a request sent this close to a pending one is its token

# open: nothing went out above the old limit yet; hold: judging; queued: undo; clear: keep.
Verdict = Literal["open", "hold", "queued", "clear"]


class Request(NamedTuple):
    """A request sent at `sent`: its TTFT if `done`, else its age so far (a lower bound)."""

    sent: float
    ttft: float
    done: bool


class RaiseTrial:
    """One raise from `before` at `at`, judged against `threshold` seconds of TTFT (the
    baseline plus the tolerance) on `needed` requests sent at the raised level, one at a
    time."""

    __slots__ = ("_done", "_pending", "_rounds", "at", "before", "needed", "threshold", "worst")

    def __init__(self, at: float, before: int, threshold: float, needed: int = 1) -> None:
        self.at = at
        self.before = before
        self.threshold = threshold
        self.needed = needed
        self.worst: float | None = None  # the longest TTFT (or wait) that decided the verdict
        # (opened, held at) of each round: a request let through at the raised level, judged.
        self._rounds: list[tuple[float, float | None]] = [(at, None)]
        self._done: list[Request] = []  # requests sent since `at` with their first token
        self._pending: list[Request] = []  # those still without one, at the last call

    @property
    def held(self) -> bool:
        """True while the limit is held at `before` (a round's request is judged)."""
        return self._rounds[-1][1] is not None

    def sample(self, at: float, ttft: float) -> None:
        """A first token at `at`, `ttft` after its request was sent."""
        sent = at - ttft
        if sent >= self.at - _EARLY:
            self._done.append(Request(sent, ttft, True))
            self._pending = [r for r in self._pending if abs(r.sent - sent) > _SAME]

    def pending(self, at: float, sent: Sequence[float]) -> None:
        """The send times of the requests still awaiting their first token at `at`."""
        self._pending = [Request(s, at - s, False) for s in sent if s >= self.at - _EARLY]

    def look(self, at: float, in_use: int) -> Verdict:
        """The verdict at `at`, with `in_use` permits held (more than `before` means a
        request went out at the raised level)."""
        opened, held_at = self._rounds[-1]
        if held_at is None:
            if in_use <= self.before and not self._since(opened):
                return "open"
            held_at = at
            self._rounds[-1] = (opened, at)
        rounds = [self._members(opened, held) for opened, held in self._rounds if held is not None]
        judged = [r for members in rounds for r in members]
        over = [r.ttft for r in judged if r.ttft > self.threshold]
        if over:
            self.worst = max(over)
            return "queued"
        if at < held_at + SEND_SLACK * self.threshold or not all(
            members and all(r.done for r in members) for members in rounds
        ):
            return "hold"  # a round's request not sent yet, or without its first token
        if len(rounds) < self.needed:
            self._rounds.append((at, None))
            return "open"
        self.worst = max(r.ttft for r in judged)
        return "clear"

    def _since(self, opened: float) -> list[Request]:
        return [r for r in self._done + self._pending if r.sent >= opened - _EARLY]

    def _members(self, opened: float, held: float) -> list[Request]:
        """A round's requests: those sent from its opening until just after its hold or,
        if none was seen by then (sent late, or never), the first one sent since."""
        since = self._since(opened)
        sent = [r for r in since if r.sent <= held + SEND_SLACK * self.threshold]
        return sent or sorted(since)[:1]
