"""Properties of the auto-tune controllers under any sample sequence (hypothesis)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.engine.autotune import AimdLimit, BufferTuner, GradientLimit

# An event: (seconds since the previous one, kind, value): kind 0 = a look at the limiter
# (value: permits in use), 1 = an overload, 2 = a TTFT sample (value: milliseconds).
events = st.lists(
    st.tuples(
        st.floats(0.0, 3.0, allow_nan=False),
        st.integers(0, 2),
        st.integers(0, 2000),
    ),
    max_size=200,
)
bounds = st.tuples(st.integers(1, 20), st.integers(0, 40)).map(lambda b: (b[0], b[0] + b[1]))


@given(events, bounds, st.integers(1, 80))
def test_aimd_stays_within_bounds(
    seq: list[tuple[float, int, int]], b: tuple[int, int], start: int
) -> None:
    aimd = AimdLimit(start, minimum=b[0], maximum=b[1], window=1.0)
    at = 0.0
    for gap, kind, value in seq:
        at += gap
        move = aimd.overload(at, "429") if kind == 1 else aimd.observe(at, value % 100)
        assert b[0] <= aimd.limit <= b[1]
        if move is not None:
            assert move.value == aimd.limit


@given(
    st.lists(st.floats(0.0, 0.999, allow_nan=False), min_size=1, max_size=50), st.integers(2, 64)
)
def test_aimd_one_burst_within_a_window_is_one_cut(offsets: list[float], start: int) -> None:
    aimd = AimdLimit(start, minimum=1, maximum=64, backoff=0.9, window=1.0)
    moves = [aimd.overload(5.0 + t, "529") for t in sorted(offsets)]
    assert sum(m is not None for m in moves) <= 1
    assert aimd.limit == max(1, int(start * 0.9))


@given(events)
def test_aimd_more_errors_never_give_a_higher_limit(seq: list[tuple[float, int, int]]) -> None:
    """The same run plus extra overloads ends no higher (monotone in the failures)."""
    plain = AimdLimit(16, window=1.0)
    worse = AimdLimit(16, window=1.0)
    at = 0.0
    for gap, kind, _value in seq:
        at += gap
        plain.observe(at, 100)
        worse.observe(at, 100)
        if kind == 1:
            worse.overload(at, "429")
        assert worse.limit <= plain.limit


@given(events, bounds, st.integers(1, 80))
def test_gradient_stays_within_bounds(
    seq: list[tuple[float, int, int]], b: tuple[int, int], start: int
) -> None:
    """Any samples, looks and requests still waiting (kind 1: one sent `value` ms ago):
    the limit stays in bounds, and a raise on trial is the kept level or one above it."""
    g = GradientLimit(
        start, minimum=b[0], maximum=b[1], window=1.0, baseline_every=5.0, min_samples=1
    )
    at = 0.0
    for gap, kind, value in seq:
        at += gap
        if kind == 2:
            g.sample(at, value / 1000)
        elif kind == 1:
            g.pending(at, [at - value / 1000])
        else:
            move = g.observe(at, value % 100)
            if move is not None:
                assert move.value == g.limit
        assert b[0] <= g.limit <= b[1]
        assert g.kept <= g.limit <= g.kept + 1


@given(st.integers(50, 2000), st.integers(50, 2000), st.integers(2, 64))
def test_gradient_a_slower_window_never_gives_a_higher_limit(
    fast: int, slow: int, start: int
) -> None:
    """Monotone: after the same baseline, a window with a higher TTFT ends no higher."""
    fast, slow = min(fast, slow), max(fast, slow)
    results = []
    for ttft in (fast, slow):
        g = GradientLimit(start, window=1.0, min_samples=1, baseline_every=1000.0)
        g.observe(0.0, in_use=start)
        g.sample(0.5, 0.050)
        g.observe(1.0, in_use=0)
        g.sample(1.5, ttft / 1000)
        g.observe(2.0, in_use=0)
        results.append(g.kept)  # a raise on trial is not kept yet
    assert results[1] <= results[0]


@given(st.integers(1, 400), st.integers(1, 64), st.integers(1, 64))
def test_gradient_does_not_flap_under_steady_input(ttft_ms: int, start: int, in_use: int) -> None:
    """A steady TTFT and a steady load: the limit kept moves one way only, then stays (a
    raise on trial holds the old level in between: that is not a move back)."""
    g = GradientLimit(start, window=1.0, min_samples=1, baseline_every=10_000.0)
    g.observe(0.0, in_use)
    limits = []
    for t in range(1, 120):
        g.sample(t - 0.5, ttft_ms / 1000)
        g.observe(float(t), in_use)
        limits.append(g.kept)
    steps = [b - a for a, b in itertools.pairwise(limits) if b != a]
    assert all(s > 0 for s in steps) or all(s < 0 for s in steps)


@given(
    st.integers(1, 300),
    st.integers(1, 1024),
    st.integers(1, 64),
    st.integers(50, 5000),
    st.one_of(st.none(), st.integers(1000, 10_000_000)),
)
def test_buffer_does_not_flap_and_respects_the_ceiling(
    call_ms: int, start: int, sessions: int, chunk: int, ceiling: int | None
) -> None:
    tuner = BufferTuner(start, min(start, 256), target_buffer_ms=500, hysteresis=0.2, window=1.0)
    values = []
    for t in range(0, 60):
        tuner.calls(float(t), 5, 5 * call_ms / 1000)
        tuner.decide(float(t) + 0.5, sessions=sessions, bytes_per_chunk=chunk, ceiling=ceiling)
        values.append(tuner.maxsize)
        assert 1 <= tuner.maxsize <= 1024 and 1 <= tuner.batch_max <= 256
        if ceiling is not None and ceiling >= sessions * chunk:
            assert sessions * tuner.maxsize * chunk <= ceiling
    steps = [b - a for a, b in itertools.pairwise(values) if b != a]
    assert all(s > 0 for s in steps) or all(s < 0 for s in steps)  # one way only
    assert len(set(values[2:])) == 1  # settled after the first whole window


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(1, 300), st.integers(0, 20)), max_size=40))
def test_buffer_slower_consumer_never_gives_a_bigger_buffer(calls: list[tuple[int, int]]) -> None:
    """Monotone: the same windows with every call slower end with maxsize no larger."""
    fast = BufferTuner(32, 32, hysteresis=0.0, window=1.0)
    slow = BufferTuner(32, 32, hysteresis=0.0, window=1.0)
    for t, (ms, count) in enumerate(calls):
        fast.calls(float(t), count, count * ms / 1000)
        slow.calls(float(t), count, count * 2 * ms / 1000)
        fast.decide(t + 0.5, sessions=4, bytes_per_chunk=400)
        slow.decide(t + 0.5, sessions=4, bytes_per_chunk=400)
        assert slow.maxsize <= fast.maxsize


@given(
    st.lists(st.tuples(st.integers(1, 2000), st.integers(0, 80)), max_size=60),
    bounds,
    st.integers(1, 80),
    st.integers(1, 80),
)
def test_gradient_a_probe_never_raises_the_limit(
    steps: list[tuple[int, int]], b: tuple[int, int], start: int, probe: int
) -> None:
    """While the baseline is re-measured the limit is at most the one in force before."""
    g = GradientLimit(
        start,
        minimum=b[0],
        maximum=b[1],
        window=1.0,
        baseline_every=3.0,
        probe_limit=probe,
        min_samples=1,
    )
    g.observe(0.0, start)
    before = g.limit
    for t, (ttft_ms, in_use) in enumerate(steps, start=1):
        g.sample(t - 0.5, ttft_ms / 1000)
        g.observe(float(t), in_use)
        if g.probing:
            assert g.limit <= before
        else:
            before = g.limit


@settings(max_examples=200)
@given(
    st.lists(st.integers(50, 300).filter(lambda ms: ms != 110), min_size=1, max_size=6),
    st.integers(1, 4),
    st.sampled_from([0.01, 0.02, 0.05, 0.1]),
)
def test_gradient_a_raise_is_kept_only_if_each_request_tried_at_it_found_no_queue(
    ttfts_ms: list[int], needed: int, every: float
) -> None:
    """The trial protocol: requests go out at the raised level one at a time (the limit
    holds the old level while one is judged, looked at every `every` seconds, the late
    ones by their age); the raise is refused at the first one over the threshold (110 ms
    here) and no other goes out after it, and kept after `needed` that were not."""
    g = GradientLimit(8, window=1.0, tolerance=0.1, trial_requests=needed, min_samples=1)
    g.observe(0.0, 8)
    g.sample(0.5, 0.100)
    g.observe(1.0, 8)  # baseline 100 ms; 8 -> 9 on trial
    at, tried = 1.0, 0
    for ms in ttfts_ms:
        if not g.on_trial:
            break
        assert g.limit == 9  # the next request may go out...
        g.observe(at, in_use=9)  # ...and once it has, the old level holds
        assert g.limit == 8
        sent, ttft, tried = at, ms / 1000, tried + 1
        t = at
        while g.on_trial and t + every < sent + ttft:  # waiting for its first token
            t += every
            g.pending(t, [sent])
            g.observe(t, in_use=9)
            assert g.limit == 8
        if not g.on_trial:
            assert t - sent <= 0.110 + every  # refused on its age, before its first token
            break
        t = sent + ttft
        g.sample(t, ttft)
        while g.on_trial and g.limit == 8:  # judged: refused, kept, or the next one
            t += every
            g.pending(t, [])
            g.observe(t, in_use=8)
        at = t
    slow = [i for i, ms in enumerate(ttfts_ms) if ms > 110]
    if slow and slow[0] < needed:
        assert not g.on_trial and g.kept == g.limit == 8 and tried == slow[0] + 1
    elif len(ttfts_ms) >= needed:
        assert not g.on_trial and g.kept == g.limit == 9 and tried == needed
    else:
        assert g.on_trial and g.kept == 8
