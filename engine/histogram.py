"""A cheap log-bucket latency histogram: a few hundred nanoseconds per record, small in memory.

Values are seconds. Buckets are geometric, eight per power of two (one log2 and one dict
update per record), so a reported percentile is within about 4.4% of the true value.
Buckets live in a sparse dict: a session whose latencies span three decades holds a few
dozen entries, not thousands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Histogram", "Percentiles"]

_log2 = math.log2


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Count, mean, p50/p90/p99 and max of one histogram, in seconds (None when empty)."""

    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None

    @staticmethod
    def empty() -> Percentiles:
        """The summary of a histogram that has seen nothing."""
        return _EMPTY


_EMPTY = Percentiles(0, None, None, None, None, None)


_ZERO = -1_000_000  # the bucket of exact zeros (and clamped negatives)
_PER_OCTAVE = 8.0  # buckets per power of two: each is 2**(1/8) wide, about 9%
# Shifts indices so that 1 us to 1 hour land in 0..256: small ints are cached by CPython, so
# the dict's keys cost no allocation. Below 1 us int() truncates toward zero, which only
# widens the buckets of values too small to matter.
_OFFSET = 160.0


def _bucket_value(index: int) -> float:
    """The geometric midpoint of a bucket, in seconds (within ~4.4% of any value in it)."""
    if index == _ZERO:
        return 0.0
    return 2.0 ** ((index - _OFFSET + 0.5) / _PER_OCTAVE)


def _bucket_upper(index: int) -> float:
    """The exclusive upper bound of a bucket (0.0 for the bucket of exact zeros). Indices
    below 0 (values under 1 us, truncated toward zero) still lie below their bound."""
    if index == _ZERO:
        return 0.0
    return 2.0 ** ((index + 1 - _OFFSET) / _PER_OCTAVE)


class Histogram:
    """Records latencies and answers percentiles; not thread-safe (one event loop owns it)."""

    __slots__ = ("_counts", "count", "max", "total")

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def record(self, seconds: float) -> None:
        """Add one observation (zero and negative values count as zero)."""
        if seconds > 0.0:
            index = int(_log2(seconds) * _PER_OCTAVE + _OFFSET)
        else:
            seconds = 0.0
            index = _ZERO
        counts = self._counts
        counts[index] = counts.get(index, 0) + 1
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: Histogram) -> None:
        """Fold another histogram into this one (for totals across sessions)."""
        counts = self._counts
        for index, n in other._counts.items():
            counts[index] = counts.get(index, 0) + n
        self.count += other.count
        self.total += other.total
        if other.max > self.max:
            self.max = other.max

    def copy(self) -> Histogram:
        """An independent copy (to compare with later: `since`)."""
        fresh = Histogram()
        fresh.merge(self)
        return fresh

    def since(self, earlier: Histogram) -> Histogram:
        """What was recorded after `earlier`, a copy this histogram then held: the counts
        per bucket subtracted. The max is the top of the highest bucket left (the largest
        value since is not kept), never above this histogram's own max."""
        recent = Histogram()
        before = earlier._counts
        top = None
        for index, n in self._counts.items():
            left = n - before.get(index, 0)
            if left > 0:
                recent._counts[index] = left
                recent.count += left
                top = index if top is None or index > top else top
        if top is not None:
            recent.total = max(0.0, self.total - earlier.total)
            recent.max = min(self.max, _bucket_upper(top))
        return recent

    def buckets(self) -> list[tuple[float, int]]:
        """The non-empty buckets in order as (upper bound, count): every value counted in a
        bucket is below its bound (exact zeros have the bound 0.0 and equal it). From about
        1 us up the bounds are 2**(k/8) seconds for whole k, each the next bucket's lower
        bound, so the count of values below any power of two from 2**-19 up is exact: what
        the control API's /metrics gives Prometheus as cumulative buckets."""
        return [(_bucket_upper(index), self._counts[index]) for index in sorted(self._counts)]

    def quantile(self, q: float) -> float | None:
        """The value below which a fraction `q` of observations fall, or None when empty."""
        if not self.count:
            return None
        return self._quantiles((q,))[0]

    def summary(self) -> Percentiles:
        """Count, mean, p50, p90, p99 and max in one pass."""
        if not self.count:
            return _EMPTY
        p50, p90, p99 = self._quantiles((0.50, 0.90, 0.99))
        return Percentiles(self.count, self.total / self.count, p50, p90, p99, self.max)

    def _quantiles(self, qs: tuple[float, ...]) -> list[float]:
        ranks = [max(1, math.ceil(q * self.count)) for q in qs]
        out: list[float] = []
        seen = 0
        i = 0
        for index in sorted(self._counts):
            seen += self._counts[index]
            while i < len(ranks) and seen >= ranks[i]:
                out.append(min(_bucket_value(index), self.max))
                i += 1
            if i == len(ranks):
                break
        while len(out) < len(ranks):
            out.append(self.max)
        return out
