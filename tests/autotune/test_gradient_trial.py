"""The gradient's raise on trial and its in-flight TTFT lower bounds, exactly: a raise lets
one request through at the new level, holds the old one while that request is judged, and
is kept or refused on what the requests sent at it show (their first token, or their age
while they still wait for it)."""

from __future__ import annotations

from sluice.engine.autotune import GradientLimit, Move
from sluice.engine.autotune.gradient import FIRST_HOLD, HOLD_WINDOWS
from sluice.engine.autotune.trial import SEND_SLACK, RaiseTrial

from .test_controllers import feed, pass_trial


def raised(start: int = 8, trials: int = 3) -> GradientLimit:
    """A gradient with a 100 ms baseline (threshold 110 ms) that raised `start` by one at
    1.0, nothing sent at the new level yet."""
    g = GradientLimit(start, window=1.0, headroom=1.0, tolerance=0.1, trial_requests=trials)
    g.observe(0.0, in_use=start)
    feed(g, 0.1, 0.100)
    move = g.observe(1.0, in_use=start)
    assert move is not None and move.value == start + 1 and g.on_trial
    return g


def test_a_raise_holds_the_old_level_once_a_request_goes_out_at_the_new_one() -> None:
    g = raised()
    assert g.limit == 9 and g.kept == 8  # nobody went out at 9 yet: the trial is open
    assert g.observe(1.0, in_use=9) == Move(8, "hold", "9 on trial (a request sent at it)", 1.0)
    assert g.limit == 8 and g.on_trial
    assert g.observe(1.05, in_use=9) is None  # held, nothing judged yet


def test_a_request_at_the_raised_level_that_queues_refuses_the_raise() -> None:
    g = raised()
    g.observe(1.0, in_use=9)  # held
    g.sample(1.15, 0.150)  # the request sent at 1.0 waited 50 ms for a slot
    move = g.observe(1.2, in_use=8)
    assert move == Move(8, "no raise", "9 queued a request (TTFT 150 ms vs 100 ms)", 1.2)
    assert not g.on_trial and g.limit == 8 and g.kept == 8


def test_a_request_still_waiting_past_the_threshold_refuses_the_raise_before_its_token() -> None:
    """Its TTFT is at least its age: the queue shows before the slow first token does."""
    g = raised()
    g.observe(1.0, in_use=9)
    g.pending(1.1, [0.95, 1.0])  # sent at 1.0, 100 ms without a token: not yet over 110
    assert g.observe(1.1, in_use=9) is None and g.on_trial
    g.pending(1.12, [1.0])  # 120 ms and still waiting
    move = g.observe(1.12, in_use=9)
    assert move is not None and move.value == 8 and move.change == "no raise"
    assert move.cause == "9 queued a request (TTFT 120 ms vs 100 ms)"


def test_the_requests_are_tried_one_at_a_time_then_the_raise_is_kept() -> None:
    g = raised(trials=2)
    assert g.observe(1.0, in_use=9) is not None  # the first went out: hold
    g.sample(1.1, 0.100)
    assert g.observe(1.2, in_use=8) == Move(9, "trial", "9 on trial (the next request)", 1.2)
    assert g.limit == 9 and g.kept == 8  # the next one may go out
    assert g.observe(1.2, in_use=9) == Move(8, "hold", "9 on trial (a request sent at it)", 1.2)
    g.sample(1.3, 0.100)
    move = g.observe(1.4, in_use=8)
    cause = "9 tried on 2 requests, no queue (TTFT up to 100 ms vs 100 ms)"
    assert move == Move(9, "+1", cause, 1.4)
    assert not g.on_trial and g.limit == 9 and g.kept == 9


def test_requests_sent_while_the_old_level_is_held_do_not_judge_the_raise() -> None:
    """Let in under the old level, they tell nothing about the new one."""
    g = raised(trials=1)
    g.observe(1.0, in_use=9)  # held at 1.0; the request let through goes out at once
    g.sample(1.2, 0.150)  # sent at 1.05, under the held level: slow, but not the raise's
    g.sample(1.1, 0.100)  # the one sent at 1.0
    move = g.observe(1.2, in_use=8)
    assert move is not None and (move.value, move.change) == (9, "+1")


def test_a_request_let_through_but_sent_late_is_still_the_one_judged() -> None:
    """A permit granted at the hold whose request goes out only later (a busy event loop)
    is waited for, not skipped: no second request goes out meanwhile."""
    g = raised(trials=1)
    g.observe(1.0, in_use=9)
    late = 1.0 + 2 * SEND_SLACK * 0.110
    g.pending(1.1, [late])
    assert g.observe(1.1, in_use=9) is None and g.limit == 8
    g.sample(late + 0.150, 0.150)
    move = g.observe(late + 0.2, in_use=8)
    assert move is not None and move.change == "no raise"


def test_a_level_refused_once_is_tried_again_after_a_few_windows_then_held_off_longer() -> None:
    g = raised()
    g.observe(1.0, in_use=9)
    g.sample(1.15, 0.150)
    g.observe(1.2, in_use=8)  # 9 refused at 1.2: held off FIRST_HOLD windows
    t = 1.2
    raises = []
    for _ in range(HOLD_WINDOWS + 2):
        feed(g, t + 0.1, 0.100)
        g.observe(t + 0.5, in_use=g.limit)  # 8 reached, no queue
        t += 1.0
        move = g.observe(t, in_use=g.limit)
        if move is not None and move.change == "+1":
            raises.append(t)
            g.observe(t, in_use=9)  # hold
            g.sample(t + 0.15, 0.150)  # 9 queues again
            t += 0.25
            assert g.observe(t, in_use=8) is not None and g.limit == 8
    # tried again after FIRST_HOLD windows, then not within HOLD_WINDOWS of that refusal
    assert len(raises) == 1 and raises[0] - 1.2 >= FIRST_HOLD
    assert raises[0] - 1.2 < FIRST_HOLD + 2


def test_a_kept_raise_that_queues_after_all_is_undone_before_the_window_ends() -> None:
    """Requests sent after a kept raise that show a queue undo it at once, back to the
    level before; requests sent before it do not."""
    g = raised(trials=1)
    move = pass_trial(g, 1.0, 8)
    assert move is not None and move.value == 9  # kept at 1.25
    feed(g, 1.3, 0.150, n=3)  # sent before the raise was kept: not its doing
    assert g.observe(1.35, in_use=9) is None
    feed(g, 1.45, 0.150, n=2)  # sent after it, queued: two are not enough yet
    assert g.observe(1.5, in_use=9) is None
    g.sample(1.55, 0.150)
    move = g.observe(1.6, in_use=9)
    assert move == Move(8, "-1", "TTFT p75 150 ms vs baseline 100 ms: the raise to 9 queued", 1.6)
    assert g.observe(2.0, in_use=8) is None  # a new window began at the undo


def test_requests_still_waiting_count_with_their_age_after_a_kept_raise() -> None:
    g = raised(trials=1)
    pass_trial(g, 1.0, 8)  # kept at 1.25
    g.pending(1.36, [1.26, 1.27, 1.28])  # three sent after it, none with a token yet
    assert g.observe(1.36, in_use=9) is None  # 80-100 ms so far: nothing shows yet
    g.pending(1.5, [1.26, 1.27, 1.28])
    move = g.observe(1.5, in_use=9)
    assert move is not None and (move.value, move.change) == (8, "-1")


def test_a_kept_raise_that_does_not_queue_waits_for_the_window() -> None:
    g = raised(trials=1)
    pass_trial(g, 1.0, 8)  # kept at 1.25
    feed(g, 1.4, 0.105)  # sent after it, within the tolerance
    g.pending(1.5, [1.45])
    assert g.observe(1.5, in_use=9) is None and g.limit == 9
    move = g.observe(2.25, in_use=9)
    assert move is not None and move.value == 10 and g.on_trial


def test_a_trial_alone_waits_while_nothing_goes_out() -> None:
    trial = RaiseTrial(1.0, 8, 0.110, needed=1)
    assert trial.look(1.5, in_use=8) == "open"  # nobody pressed on the new level
    assert trial.look(2.0, in_use=9) == "hold"  # now someone did
    trial.pending(2.05, [2.0])
    assert trial.look(2.05, in_use=9) == "hold"
    trial.sample(2.1, 0.100)
    assert trial.look(2.1, in_use=9) == "clear" and trial.worst == 0.100


def test_a_trial_judges_against_the_old_levels_ttft_when_under_the_baseline() -> None:
    """The baseline comes down a quarter of the way a window; the trial compares with
    what the old level gives now, so a queue of one shows while the baseline is high."""
    g = GradientLimit(8, window=1.0, tolerance=0.1, trial_requests=1)
    g.observe(0.0, in_use=4)
    feed(g, 0.1, 0.140)
    g.observe(1.0, in_use=4)  # baseline 140 ms (a slow start), 8 not reached
    g.observe(1.1, in_use=8)
    feed(g, 1.2, 0.100)
    assert g.observe(2.0, in_use=8) is not None  # baseline 130 ms; this window 100 ms
    g.observe(2.0, in_use=9)  # held
    g.sample(2.115, 0.115)  # 115 ms: under 130 x 1.1, over 100 x 1.1
    move = g.observe(2.2, in_use=8)
    assert move == Move(8, "no raise", "9 queued a request (TTFT 115 ms vs 100 ms)", 2.2)


def test_a_level_refused_before_is_tried_on_twice_the_requests() -> None:
    g = raised(trials=1)
    g.observe(1.0, in_use=9)
    g.sample(1.15, 0.150)
    assert g.observe(1.2, in_use=8) is not None  # 9 refused at 1.2
    t = 1.2
    while not g.on_trial:  # clean windows at 8 until 9 is tried again
        feed(g, t + 0.1, 0.100)
        g.observe(t + 0.5, in_use=8)
        t += 1.0
        g.observe(t, in_use=8)
    moves = [pass_trial(g, t, 8)]  # one clean request is not enough now
    assert g.on_trial and moves[0] is not None and moves[0].change == "trial"
    g.observe(t + 0.5, in_use=9)
    g.sample(t + 0.6, 0.100)
    move = g.observe(t + 0.75, in_use=8)
    assert move is not None and move.change == "+1" and "on 2 requests" in move.cause


def test_a_kept_raise_undone_counts_as_a_second_refusal_of_its_level() -> None:
    """9 refused, later kept, then queued after all: held off HOLD_WINDOWS, not 4."""
    g = raised(trials=1)
    g.observe(1.0, in_use=9)
    g.sample(1.15, 0.150)
    g.observe(1.2, in_use=8)  # 9 refused once
    t = 1.2
    while not g.on_trial:
        feed(g, t + 0.1, 0.100)
        g.observe(t + 0.5, in_use=8)
        t += 1.0
        g.observe(t, in_use=8)
    for n in range(2):  # kept on two clean requests
        g.observe(t + n * 0.25, in_use=9)
        g.sample(t + n * 0.25 + 0.1, 0.100)
        g.observe(t + n * 0.25 + 0.25, in_use=8)
    assert not g.on_trial and g.limit == 9
    t += 0.5
    feed(g, t + 0.2, 0.150, n=3)  # then it queues
    move = g.observe(t + 0.3, in_use=9)
    assert move is not None and (move.value, move.change) == (8, "-1")
    t += 0.3
    for _ in range(HOLD_WINDOWS - 1):
        feed(g, t + 0.1, 0.100)
        g.observe(t + 0.5, in_use=8)
        t += 1.0
        g.observe(t, in_use=8)
        assert not g.on_trial and g.limit == 8
