"""GradientLimit: a delay-based concurrency cap for a server that queues instead of refusing.

Ollama does not say "too much": it queues, and the queue shows as a longer time to first
token (TTFT, measured from the request being sent, never the whole response: a response's
length is the prompt's property, not the server's load). Each window, its TTFT p75 is
compared with a baseline (the first window's, pulled a quarter of the way towards each
lower one since, re-measured periodically):
`limit x clamp(baseline x (1 + tolerance) / p75, 0.5, 1) + headroom`, the headroom added
only in a window that reached the limit (a cap nobody presses on is not raised) and showed
no queue, and never back up to a level that queued lately: so the limit settles just under
the capacity instead of keeping a standing queue of `headroom` requests.
A raise of one is tried first (trial.py): one request goes out at the new level and the
limit holds at the old one until that request shows no queue, so a step above the capacity
queues one request, not a TTFT's worth of them. A raise kept is still judged early: once
`min_samples` requests sent after it show a queue, it is undone at that look, not at the
window's end. Requests still waiting for their first token count with their age so far (a
lower bound of their TTFT, `pending`), so a queue shows before its slow first tokens do.
A level refused once is held off for a few windows, refused again for `HOLD_WINDOWS` (one
slow request on a busy machine is not a queue; two in a row at the same level are). Every
`baseline_every` seconds the baseline is measured afresh: one window at `probe_limit`,
whose requests find no queue, then the limit returns to where it was. Pure: the caller
passes every sample's time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sluice.engine.autotune.move import Move, check_bounds
from sluice.engine.autotune.trial import RaiseTrial

__all__ = ["QUANTILE", "GradientLimit", "quantile"]

GRADIENT_FLOOR = 0.5  # one window never cuts the limit by more than half
BASELINE_STEP = 0.25  # how far a lower window's TTFT p75 pulls the baseline down
HOLD_WINDOWS = 30  # windows the limit stays under a level that queued before trying it again
FIRST_HOLD = 4  # windows a raise refused once is held off before it is tried again
TRIAL_REQUESTS = 4  # requests, one at a time, a raise is tried on before it is kept


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
        trial_requests: int = TRIAL_REQUESTS,
    ) -> None:
        check_bounds(minimum, maximum)
        for name, value in (("window", window), ("baseline_every", baseline_every)):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be seconds > 0, got {value!r}")
        if not (headroom >= 0 and tolerance >= 0 and min_samples >= 1 and trial_requests >= 1):
            raise ValueError(
                "headroom and tolerance must be >= 0, min_samples and trial_requests >= 1"
            )
        self.minimum = minimum
        self.maximum = maximum
        self.window = window
        self.headroom = headroom
        self.tolerance = tolerance
        self.baseline_every = baseline_every
        self.probe_limit = min(max(probe_limit or minimum, minimum), maximum)
        self.min_samples = min_samples
        self.trial_requests = trial_requests
        self._estimate = float(min(max(limit, minimum), maximum))
        self.baseline: float | None = None  # seconds: the TTFT p75 with no queue
        self.last_median: float | None = None  # the last closed window's TTFT p75
        self._baseline_at: float | None = None  # when the baseline was last measured
        self._probe: tuple[float, int] | None = None  # (started at, the limit to go back to)
        self._window_start: float | None = None
        self._samples: list[float] = []
        self._reached = False
        # A raise on trial: one request at the new level, the old one held meanwhile.
        self._trial: RaiseTrial | None = None
        # After a raise was kept: when, the level before it, and the TTFTs of requests sent
        # since (judged early), with the send times of those still without a first token.
        self._raised_at: float | None = None
        self._before_raise = 0.0
        self._fresh: list[float] = []
        self._pending: list[float] = []  # ages at the last `pending` call
        # (limit, until when) of the last level that showed a queue: the limit does not grow
        # back to it before then (a noisy window locks nothing for long).
        self._queued: tuple[int, float] | None = None
        self._refused: tuple[int, int] = (0, 0)  # (level, raises of it refused in a row)

    @property
    def limit(self) -> int:
        """The limit now (the probe's while a baseline is being measured, the old level
        while a raise is on trial)."""
        if self._trial is not None and self._trial.held:
            return self._trial.before
        return self._probe_level() if self._probe is not None else self._value()

    @property
    def on_trial(self) -> bool:
        """True while a raise is judged on its first requests."""
        return self._trial is not None

    @property
    def kept(self) -> int:
        """The limit not counting a raise on trial (the level before it while one is)."""
        return self._trial.before if self._trial is not None else self.limit

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
        if self._trial is not None:
            self._trial.sample(at, ttft)
        if self._raised_at is not None and at - ttft >= self._raised_at:
            self._fresh.append(ttft)

    def pending(self, at: float, sent: Sequence[float]) -> None:
        """The send times of the requests still awaiting their first token at `at` (each
        one's TTFT is at least its age): a queue shows before its slow first tokens do."""
        if self._trial is not None:
            self._trial.pending(at, sent)
        raised = self._raised_at
        self._pending = [] if raised is None else [at - s for s in sent if s >= raised]

    def observe(self, at: float, in_use: int) -> Move | None:
        """A look at the limiter at `at`, `in_use` permits held; closes the window when it
        is over and enough samples came in (judges a trial instead while one runs), and
        returns the limit's move if it changed. The look itself belongs to the window it
        opens. Look again at once after a raise: the hold then comes before a second
        request goes out at the new level."""
        self._start(at)
        assert self._window_start is not None
        move = None
        if self._trial is not None:
            move = self._judge_trial(at, in_use)
        elif self._raise_queued():
            move = self._undo(at, quantile(self._fresh + self._late()))
        elif at - self._window_start >= self.window and len(self._samples) >= self.min_samples:
            move = self._close(at, quantile(self._samples))
        if in_use >= self.limit:
            self._reached = True
        return move

    def _threshold(self) -> float:
        assert self.baseline is not None
        return self.baseline * (1 + self.tolerance)

    def _late(self) -> list[float]:
        """Ages of requests sent after a kept raise, still without a first token and
        already past the threshold (their TTFT is at least that)."""
        threshold = self._threshold()
        return [age for age in self._pending if age > threshold]

    def _raise_queued(self) -> bool:
        """True once `min_samples` requests sent after a kept raise show a queue (their p75
        over the tolerance, the late ones counted with their age): the raise is undone then,
        not at the window's end."""
        if self._raised_at is None or self.baseline is None:
            return False
        judged = self._fresh + self._late()
        return len(judged) >= self.min_samples and quantile(judged) > self._threshold()

    def _judge_trial(self, at: float, in_use: int) -> Move | None:
        """A raise on trial: hold the old level while a request sent at the new one is
        judged, then let the next one through; keep the raise once `trial_requests` showed
        no queue, refuse it as soon as one does."""
        trial = self._trial
        assert trial is not None and self.baseline is not None
        shown = self.limit
        verdict = trial.look(at, in_use)
        raised = self._value()
        if verdict == "open" or verdict == "hold":
            if self.limit == shown:
                return None
            if verdict == "hold":
                return Move(trial.before, "hold", f"{raised} on trial (a request sent at it)", at)
            return Move(raised, "trial", f"{raised} on trial (the next request)", at)
        self._trial = None
        self._restart(at)
        worst = (trial.worst or 0.0) * 1000
        unqueued = trial.threshold / (1 + self.tolerance) * 1000
        if verdict == "clear":
            self._raised_at = at  # kept, and still judged until the window's end
            self._before_raise = float(trial.before)
            if shown == raised:
                return None
            cause = f"{raised} tried on {trial.needed} requests, no queue"
            cause += f" (TTFT up to {worst:.0f} ms vs {unqueued:.0f} ms)"
            return Move(raised, f"+{raised - trial.before}", cause, at)
        self._refuse(raised, at)
        self._estimate = float(trial.before)
        cause = f"{raised} queued a request (TTFT {worst:.0f} ms vs {unqueued:.0f} ms)"
        return Move(trial.before, "no raise", cause, at)

    def _refuse(self, level: int, at: float) -> None:
        """`level` showed a queue after a raise: held off for FIRST_HOLD windows, or for
        HOLD_WINDOWS when the raise before this one to it was refused too."""
        count = self._refused[1] + 1 if self._refused[0] == level else 1
        self._refused = (level, count)
        windows = FIRST_HOLD if count == 1 else HOLD_WINDOWS
        self._queued = (level, at + windows * self.window)

    def _undo(self, at: float, middle: float) -> Move | None:
        """A kept raise queued after all: back to the level before it, held off like a
        refused trial."""
        before = self._value()
        self._refuse(before, at)
        self._estimate = self._before_raise
        self._restart(at)
        self.last_median = middle
        after = self._value()
        if after == before:
            return None
        assert self.baseline is not None
        ms = f"TTFT p75 {middle * 1000:.0f} ms vs baseline {self.baseline * 1000:.0f} ms"
        return Move(after, f"-{before - after}", f"{ms}: the raise to {before} queued", at)

    def _restart(self, at: float) -> None:
        """A new window from `at`, no raise under judgement."""
        self._window_start = at
        self._samples = []
        self._reached = False
        self._raised_at = None
        self._fresh = []
        self._pending = []

    def _close(self, at: float, middle: float) -> Move | None:
        """The window is over: `middle`, its TTFT p75, moves the limit
        (or ends or starts a probe)."""
        reached = self._reached
        self._restart(at)
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
            self._queued = (before, at + HOLD_WINDOWS * self.window)  # a queue showed at it
        elif self._queued is not None and at >= self._queued[1]:
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
            # A level refused before proves itself on twice the requests per refusal.
            refused = self._refused[1] if self._refused[0] == after else 0
            needed = self.trial_requests * (1 + refused)
            # Judged against the TTFT the old level gives now when that is under the
            # baseline (which comes down slowly): a queue of one shows more surely.
            threshold = min(self.baseline, middle) * (1 + self.tolerance)
            self._trial = RaiseTrial(at, before, threshold, needed)
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
