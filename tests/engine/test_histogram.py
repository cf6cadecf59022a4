"""The log-bucket histogram behind every percentile: exact count, mean and max, percentiles
within the bucket resolution of the true (nearest-rank) value, and merging."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.engine.histogram import Histogram, Percentiles


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_an_empty_histogram_has_no_percentiles() -> None:
    h = Histogram()
    assert h.summary() == Percentiles.empty() == Percentiles(0, None, None, None, None, None)
    assert h.quantile(0.5) is None


def test_count_mean_and_max_are_exact() -> None:
    h = Histogram()
    for v in (0.001, 0.002, 0.003, 0.010):
        h.record(v)
    s = h.summary()
    assert s.count == 4
    assert s.mean == pytest.approx(0.004)
    assert s.max == 0.010
    assert s.p99 == pytest.approx(0.010, rel=0.07)


def test_negative_values_count_as_zero_and_tiny_values_share_the_first_bucket() -> None:
    h = Histogram()
    h.record(-1.0)
    h.record(0.0)
    h.record(2e-7)
    s = h.summary()
    assert s.count == 3 and s.max == 2e-7
    assert s.p50 is not None and s.p50 <= 1e-6


def test_percentiles_are_ordered() -> None:
    h = Histogram()
    for i in range(1, 1001):
        h.record(i / 1000)
    s = h.summary()
    assert s.p50 is not None and s.p90 is not None and s.p99 is not None and s.max is not None
    assert s.p50 <= s.p90 <= s.p99 <= s.max
    assert s.p50 == pytest.approx(0.5, rel=0.07)
    assert s.p90 == pytest.approx(0.9, rel=0.07)
    assert s.p99 == pytest.approx(0.99, rel=0.07)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(
        st.floats(min_value=1e-6, max_value=100.0, allow_nan=False), min_size=1, max_size=300
    ),
    q=st.sampled_from([0.5, 0.9, 0.99, 0.0, 1.0]),
)
def test_any_quantile_is_within_the_bucket_resolution_of_the_true_value(
    values: list[float], q: float
) -> None:
    h = Histogram()
    for v in values:
        h.record(v)
    got = h.quantile(q)
    true = nearest_rank(values, q)
    assert got is not None
    # 8 sub-buckets per power of two: a bucket midpoint is within 1/16 of its values.
    assert abs(got - true) <= true / 16 + 1e-6
    assert got <= max(values)


@settings(max_examples=60, deadline=None)
@given(
    a=st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), max_size=100),
    b=st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), max_size=100),
)
def test_merging_equals_recording_everything_in_one(a: list[float], b: list[float]) -> None:
    left, right, both = Histogram(), Histogram(), Histogram()
    for v in a:
        left.record(v)
        both.record(v)
    for v in b:
        right.record(v)
        both.record(v)
    left.merge(right)
    merged, direct = left.summary(), both.summary()
    assert (merged.count, merged.max, merged.p50, merged.p90, merged.p99) == (
        direct.count, direct.max, direct.p50, direct.p90, direct.p99,
    )  # fmt: skip
    if direct.mean is not None:
        assert merged.mean == pytest.approx(direct.mean)


_VALUES = st.lists(st.floats(min_value=0.0, max_value=100.0), max_size=60)


@given(_VALUES, _VALUES)
@settings(max_examples=200, deadline=None)
def test_since_an_earlier_copy_is_exactly_what_was_recorded_after_it(
    before: list[float], after: list[float]
) -> None:
    whole, earlier, alone = Histogram(), Histogram(), Histogram()
    for value in before:
        whole.record(value)
        earlier.record(value)
    mark = earlier.copy()
    for value in after:
        whole.record(value)
        alone.record(value)
    recent = whole.since(mark)
    assert recent.count == len(after) == alone.count
    assert recent.buckets() == alone.buckets()
    assert math.isclose(recent.total, alone.total, rel_tol=1e-9, abs_tol=1e-9)
    if after:  # the max is the top of its bucket: at or above the true one, never above all
        assert alone.max <= recent.max <= whole.max
        for q in (0.5, 0.9, 0.99):
            got, true = recent.quantile(q), alone.quantile(q)
            assert got is not None and true is not None and true <= got <= whole.max
    else:
        assert recent.summary() == Percentiles.empty()


class _Recorded:
    """What `Latencies.add` reads of a session: its histograms, no ttft or slot wait."""

    def __init__(self) -> None:
        self.queue_wait, self.token_age, self.consumer_call = Histogram(), Histogram(), Histogram()

    def ttft(self) -> None:
        return None

    def slot_wait(self, now: float) -> None:
        return None


def test_the_10s_queue_wait_forgets_what_came_before_the_window() -> None:
    """After a retune the whole run's p99 stays up; the last 10 s show the change."""
    from sluice.engine.totals import TotalsAccumulator

    acc = TotalsAccumulator(refresh=1.0)
    session = _Recorded()
    for _ in range(100):
        session.queue_wait.record(1.0)  # before the retune: a second in the queue
    acc.totals([session], [], 0.0, fresh_latencies=True)  # type: ignore[list-item]
    for _ in range(100):
        session.queue_wait.record(0.01)
    mid = acc.totals([session], [], 5.0, fresh_latencies=True)  # type: ignore[list-item]
    assert mid.queue_wait_10s.count == 100 and mid.queue_wait_10s.p99 == pytest.approx(
        0.01, rel=0.1
    )
    for _ in range(100):
        session.queue_wait.record(0.01)
    late = acc.totals([session], [], 12.0, fresh_latencies=True)  # type: ignore[list-item]
    assert late.queue_wait.p99 == pytest.approx(1.0, rel=0.1)  # the whole run: still up
    assert late.queue_wait_10s.count == 200  # since the mark at 0 s (the window's start)
    assert late.queue_wait_10s.p99 == pytest.approx(0.01, rel=0.1)
