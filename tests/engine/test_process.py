"""The process sampler's loop-lag figures: the whole run's p99 and the last 10 seconds'."""

from __future__ import annotations

from collections import deque

import pytest

from sluice.engine.process import LAG_WINDOW, ProcessSampler, recent_p99


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_lag_spike_leaves_the_10s_p99_once_10s_have_passed() -> None:
    clock = Clock()
    sampler = ProcessSampler(clock=clock)
    sampler.record_lag(0.800)  # one bad moment
    for _ in range(50):
        clock.now += 0.1
        sampler.record_lag(0.001)
    shown = sampler.snapshot()
    assert shown.loop_lag_p99_10s == pytest.approx(0.800)
    assert shown.loop_lag_p99 is not None and shown.loop_lag_p99 >= 0.7
    clock.now += LAG_WINDOW - 5.0 + 0.01  # the spike is now more than 10 s old
    sampler.record_lag(0.002)
    shown = sampler.snapshot()
    assert shown.loop_lag_p99_10s is not None and shown.loop_lag_p99_10s <= 0.002
    # the whole run's p99 still remembers it (with 52 samples, p99 is the largest)
    assert shown.loop_lag_p99 is not None and shown.loop_lag_p99 >= 0.7
    assert shown.loop_lag == 0.002


def test_no_recent_samples_means_no_recent_p99() -> None:
    clock = Clock()
    sampler = ProcessSampler(clock=clock)
    assert sampler.snapshot().loop_lag_p99_10s is None
    sampler.record_lag(0.01)
    clock.now += LAG_WINDOW + 1
    assert sampler.snapshot().loop_lag_p99_10s is None


def test_reset_forgets_the_recent_samples_too() -> None:
    sampler = ProcessSampler(clock=Clock())
    sampler.record_lag(0.5)
    sampler.reset_lag()
    assert sampler.snapshot().loop_lag_p99_10s is None


def test_recent_p99_is_nearest_rank_over_the_window() -> None:
    samples = deque((float(t), t / 1000) for t in range(200))  # one a second, 0..199 ms
    # the window (189, 199] holds 10 samples, 190..199 ms: p99 of 10 is the largest
    assert recent_p99(samples, now=199.0, window=10.0) == pytest.approx(0.199)
    assert len(samples) == 10  # older ones dropped
    many = deque((i / 100, 0.001) for i in range(1000))
    many[-1] = (many[-1][0], 0.5)
    many[-2] = (many[-2][0], 0.4)
    # 1,000 samples in 10 s: p99 is the 990th smallest, not the spike of 2 samples
    assert recent_p99(many, now=9.99, window=10.0) == pytest.approx(0.001)
