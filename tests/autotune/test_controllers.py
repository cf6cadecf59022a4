"""The auto-tune controllers, exactly: fed samples with their times, no clock anywhere."""

from __future__ import annotations

import pytest

from sluice.engine.autotune import AimdLimit, BufferTuner, GradientLimit, Move
from sluice.engine.autotune.gradient import HOLD_WINDOWS, quantile

# -- AIMD -----------------------------------------------------------------------------------


def test_an_overload_cuts_by_the_backoff_and_says_why() -> None:
    aimd = AimdLimit(16, minimum=1, maximum=64, backoff=0.9, window=2.0)
    move = aimd.overload(10.0, "429", retry_after=1.5)
    assert move == Move(14, "-10%", "429", 10.0, stamped=True)
    assert move.reason("18:04:12") == "-10%: 429 at 18:04:12"
    assert aimd.limit == 14
    assert aimd.retry_until == 11.5


def test_a_burst_of_errors_in_one_window_is_one_cut() -> None:
    aimd = AimdLimit(20, window=2.0)
    assert aimd.overload(0.0, "429") is not None
    assert [aimd.overload(t, "529") for t in (0.1, 0.5, 1.0, 1.99)] == [None] * 4
    assert aimd.limit == 18
    assert aimd.overloads == 5
    assert aimd.overload(2.0, "timeout") == Move(16, "-10%", "timeout", 2.0, stamped=True)


def test_a_window_at_the_limit_without_errors_adds_one() -> None:
    aimd = AimdLimit(4, window=1.0)
    assert aimd.observe(0.0, in_use=4) is None
    assert aimd.observe(0.5, in_use=2) is None
    move = aimd.observe(1.0, in_use=4)
    assert move == Move(5, "+1", "limit reached, no errors", 1.0)
    assert move.reason("18:04:12") == "+1: limit reached, no errors"


def test_no_increase_when_the_limit_was_not_reached_or_something_failed() -> None:
    aimd = AimdLimit(4, window=1.0)
    aimd.observe(0.0, in_use=3)
    assert aimd.observe(1.0, in_use=4) is None  # the window [0, 1) never reached 4
    aimd.overload(1.2, "429")  # 4 -> 3
    assert aimd.observe(2.0, in_use=3) is None  # reached, but it failed
    assert aimd.observe(3.0, in_use=3) == Move(4, "+1", "limit reached, no errors", 3.0)


def test_retry_after_holds_the_increase_until_it_has_passed() -> None:
    aimd = AimdLimit(10, window=1.0)
    aimd.overload(0.0, "429", retry_after=5.0)
    assert aimd.observe(1.0, in_use=9) is None  # the failing window
    assert aimd.observe(2.0, in_use=9) is None  # reached, but retry-after runs to 5.0
    assert aimd.observe(3.0, in_use=9) is None
    assert aimd.observe(5.0, in_use=9) == Move(10, "+1", "limit reached, no errors", 5.0)


def test_bounds_hold_both_ways() -> None:
    aimd = AimdLimit(3, minimum=2, maximum=4, window=1.0)
    assert aimd.overload(0.0, "429") == Move(2, "-10%", "429", 0.0, stamped=True)
    assert aimd.overload(5.0, "429") is None  # already at the minimum
    top = AimdLimit(100, minimum=2, maximum=4, window=1.0)
    assert top.limit == 4  # a start above the bounds is brought inside
    top.observe(6.0, in_use=4)
    assert top.observe(7.0, in_use=4) is None  # at the maximum
    assert top.limit == 4


@pytest.mark.parametrize(
    "kwargs",
    [{"minimum": 0}, {"minimum": 5, "maximum": 4}, {"backoff": 1.0}, {"window": 0.0}],
)
def test_aimd_refuses_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AimdLimit(4, **kwargs)  # type: ignore[arg-type]


# -- gradient -------------------------------------------------------------------------------


def feed(g: GradientLimit, start: float, ttft: float, n: int = 5) -> None:
    for i in range(n):
        g.sample(start + i * 0.01, ttft)


def test_quantile_is_nearest_rank() -> None:
    assert quantile([3.0, 1.0, 2.0, 4.0]) == 3.0  # p75 of four: the third
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert quantile([5.0]) == 5.0


def pass_trial(g: GradientLimit, at: float, level: int, ttft: float = 0.100) -> Move | None:
    """The raise from `level` just made at `at` tried on `g.trial_requests` requests, one
    at a time a quarter second apart, each with `ttft`: the last look's move (the raise
    kept `0.25 x trial_requests` seconds after `at`)."""
    move = None
    for n in range(g.trial_requests):
        sent = at + n * 0.25  # a quarter second a request (exact in binary)
        assert g.observe(sent, in_use=level + 1) is not None  # one went out: hold
        assert g.limit == level and g.on_trial
        g.sample(sent + ttft, ttft)  # its first token: it was sent at `sent`
        move = g.observe(sent + 0.25, in_use=level)  # judged: the next one, or kept
    return move


def test_the_gradient_grows_by_headroom_while_ttft_stays_at_the_baseline() -> None:
    g = GradientLimit(4, window=1.0, headroom=1.0, tolerance=0.1)
    g.observe(0.0, in_use=4)
    feed(g, 0.1, 0.100)
    move = g.observe(1.0, in_use=4)
    assert move is not None and move.value == 5 and move.change == "+1"
    assert g.baseline == pytest.approx(0.100)
    move = pass_trial(g, 1.0, 4)  # kept at 2.0
    assert move is not None and (move.value, move.change) == (5, "+1")
    assert move.cause == "5 tried on 4 requests, no queue (TTFT up to 100 ms vs 100 ms)"
    assert not g.on_trial and g.limit == 5
    feed(g, 2.1, 0.105)  # within the tolerance
    g.observe(2.5, in_use=5)  # the new limit reached
    assert g.observe(3.0, in_use=5) == Move(
        6, "+1", "TTFT p75 105 ms vs baseline 100 ms, limit reached", 3.0
    )


def test_a_queue_cuts_by_baseline_over_p75() -> None:
    g = GradientLimit(20, window=1.0, headroom=1.0, tolerance=0.0)
    g.observe(0.0, in_use=12)
    feed(g, 0.1, 0.100)
    assert g.observe(1.0, in_use=12) is None  # baseline 100 ms; 20 was not reached
    feed(g, 1.1, 0.200)
    move = g.observe(2.0, in_use=20)
    # 20 x (100 / 200) = 10; no headroom in a queued window
    assert move is not None and move.value == 10 and move.change == "x0.50"


def test_no_increase_when_nobody_presses_on_the_limit() -> None:
    g = GradientLimit(8, window=1.0)
    g.observe(0.0, in_use=2)
    feed(g, 0.1, 0.1)
    assert g.observe(1.0, in_use=2) is None
    assert g.limit == 8


def test_whole_windows_wait_for_enough_samples() -> None:
    g = GradientLimit(8, window=1.0, headroom=1.0, min_samples=3)
    g.observe(0.0, in_use=8)
    feed(g, 0.1, 0.1, n=2)
    assert g.observe(1.5, in_use=8) is None  # two samples: the window stays open
    feed(g, 1.6, 0.1, n=1)
    assert g.observe(1.7, in_use=8) is not None


def test_the_baseline_is_re_measured_at_the_probe_limit() -> None:
    g = GradientLimit(10, window=1.0, headroom=0.0, baseline_every=5.0, probe_limit=2)
    g.observe(0.0, in_use=10)
    feed(g, 0.1, 0.100)
    g.observe(1.0, in_use=10)  # baseline measured at 1.0
    for t in range(2, 6):
        feed(g, t - 0.9, 0.100)
        g.observe(float(t), in_use=10)
    feed(g, 5.1, 0.300)  # the server got slower for everyone: a new floor
    move = g.observe(6.0, in_use=10)
    assert move == Move(2, "probe", "re-measuring the TTFT baseline", 6.0)
    assert g.limit == 2 and g.probing
    g.sample(6.5, 0.9)  # sent at 5.6, before the probe: queued behind the old limit
    feed(g, 6.6, 0.300)
    move = g.observe(7.0, in_use=2)
    assert move == Move(10, "back", "baseline re-measured: 300 ms", 7.0)
    assert g.baseline == pytest.approx(0.300)
    assert g.limit == 10


# -- buffer ---------------------------------------------------------------------------------


def test_maxsize_follows_the_calibrate_rule() -> None:
    tuner = BufferTuner(16, 16, target_buffer_ms=500, hysteresis=0.2, window=1.0)
    tuner.calls(0.0, 0, 0.0)
    tuner.calls(0.5, 10, 0.100)  # 10 ms a call
    move = tuner.decide(1.0, sessions=4, bytes_per_chunk=400)
    assert move is not None
    assert (move.maxsize, move.batch_max) == (50, 50)
    assert move.reason() == "x3.12: call 10 ms, target 500 ms"


def test_the_memory_ceiling_wins_and_is_said() -> None:
    tuner = BufferTuner(16, 16, target_buffer_ms=500, window=1.0)
    tuner.calls(0.0, 10, 0.100)
    move = tuner.decide(1.0, sessions=8, bytes_per_chunk=400, ceiling=100_000)
    assert move is not None and move.maxsize == 31  # 100000 // (8 x 400)
    assert move.cause.endswith("memory ceiling")


def test_hysteresis_keeps_small_differences() -> None:
    tuner = BufferTuner(50, 50, target_buffer_ms=500, hysteresis=0.2, window=1.0)
    tuner.calls(0.0, 10, 0.0105 * 10)  # 48 wanted: within 20% of 50
    assert tuner.decide(1.0, sessions=1, bytes_per_chunk=100) is None
    assert tuner.maxsize == 50


def test_a_ceiling_breach_is_corrected_without_calls() -> None:
    tuner = BufferTuner(40, 40, window=1.0)
    tuner.calls(0.0, 0, 0.0)
    move = tuner.decide(1.0, sessions=10, bytes_per_chunk=1000, ceiling=100_000)
    assert move is not None and (move.maxsize, move.batch_max) == (10, 10)
    assert tuner.decide(2.0, sessions=10, bytes_per_chunk=1000, ceiling=100_000) is None


def test_no_growth_in_a_queued_window_nor_back_to_a_level_that_queued() -> None:
    g = GradientLimit(8, window=1.0, headroom=1.0, tolerance=0.1, baseline_every=1000.0)
    g.observe(0.0, in_use=8)
    t = 0.0
    for level in (8, 9):  # baseline 100 ms; 8 -> 9 -> 10 while no queue shows
        feed(g, t + 0.1, 0.100)
        t += 1.0
        assert g.observe(t, in_use=level) is not None
        pass_trial(g, t, level)
        t += 0.25 * g.trial_requests
        g.observe(t + 0.1, in_use=g.limit if level == 8 else 9)  # 10 is not reached
    assert g.limit == 10
    feed(g, t + 0.2, 0.100)
    t += 1.0
    assert g.observe(t, in_use=9) is None  # a clean window at 10: the raise stays
    feed(g, t + 0.2, 0.125)  # a queue at 10: x0.88 and no headroom, 10 -> 8
    t += 1.0
    move = g.observe(t, in_use=10)
    assert move is not None and move.value == 8 and move.change == "x0.88"
    until = t + HOLD_WINDOWS * 1.0
    while t + 1.0 < until:  # clean windows at the limit: back to 9, never 10
        g.observe(t + 0.5, in_use=g.limit)
        feed(g, t + 0.6, 0.100)
        t += 1.0
        level = g.limit
        if g.observe(t, in_use=level) is not None:
            pass_trial(g, t, level)
            t += 0.25 * g.trial_requests
        assert g.limit <= 9
    assert g.limit == 9
    g.observe(t + 0.5, in_use=g.limit)  # HOLD_WINDOWS after the queue: 10 is tried again
    assert t + 1.0 >= until
    feed(g, t + 0.6, 0.100)
    t += 1.0
    move = g.observe(t, in_use=g.limit)
    assert move is not None and move.value == 10 and g.on_trial


def test_a_probe_never_raises_the_limit_in_force() -> None:
    """A limit already under `probe_limit` is probed where it is: no window above it."""
    g = GradientLimit(3, window=1.0, headroom=0.0, baseline_every=2.0, probe_limit=6)
    g.observe(0.0, in_use=3)
    for t in range(1, 4):  # baseline at 1.0; the probe starts at 3.0
        feed(g, t - 0.9, 0.100)
        assert g.observe(float(t), in_use=3) is None
    assert g.probing and g.limit == 3
    feed(g, 3.1, 0.120)
    assert g.observe(4.0, in_use=3) is None  # back to 3: nothing moved
    assert not g.probing and g.limit == 3 and g.baseline == pytest.approx(0.120)
