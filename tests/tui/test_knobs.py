"""Every knob by keyboard, by mouse (click and drag) and by typing, against a running engine.

Each change must show up in the engine's snapshot (the running sessions' `maxsize`, the
limiter's `limit`, ...) right away, with no session restarted.
"""

from __future__ import annotations

import re

import pytest

from sluice.engine.config import Config
from sluice.tui.app import SluiceApp
from sluice.tui.knobs import KNOBS, KnobDef, parse_knob_value
from sluice.tui.slider import Slider, snap
from tests.fakes import wait_until

from .helpers import record_notes, streaming

BY_KEY = {k.key: k for k in KNOBS}


def reached_engine(app: SluiceApp, knob: KnobDef, value: float) -> bool:
    """True when the engine, and its running sessions where that applies, use `value`."""
    engine = app.engine
    snap_ = engine.snapshot()
    if knob.read(snap_.knobs) != value:
        return False
    if knob.key == "maxsize":
        running = [s for s in snap_.sessions if not s.finished]
        return bool(running) and all(s.maxsize == value for s in running)
    if knob.backend is not None:
        backend = next(b for b in snap_.backends if b.name == knob.backend)
        return backend.limit == value and engine.limiters[knob.backend].limit == value
    if knob.key == "delay_ms":
        return engine.consumer.delay_ms == value  # type: ignore[attr-defined]
    if knob.key == "rate":
        return engine.demo.rate == value
    return True


@pytest.mark.parametrize("key", list(BY_KEY))
async def test_knob_by_keyboard_mouse_and_typing(key: str, fast_config: Config) -> None:
    knob = BY_KEY[key]
    app = SluiceApp(config=fast_config)
    notes = record_notes(app)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(lambda: len(streaming(app)) >= 2, pause=pilot.pause)
        slider = app.query_one(f"#knob-{key}", Slider)
        assert app.knob_changes == 0  # nothing fired at start-up
        before = {s.id: (app.engine.sessions[s.id], s.tokens_in) for s in streaming(app)}
        slider.focus()
        await pilot.pause()
        low, high = slider.minimum, slider.maximum
        value = slider.value
        assert value == knob.read(app.engine.knobs)

        # keyboard: one step, ten steps, the ends
        moves = [("right", 1), ("pageup", 10), ("pagedown", -10), ("left", -1)]
        if key == "maxsize":
            moves += [("l", 1), ("h", -1)]
        for press, steps in moves:
            expected = snap(value, knob.step, low, high, steps)
            await pilot.press(press)
            assert slider.value == expected, press
            assert reached_engine(app, knob, expected), press
            value = expected
        await pilot.press("end")
        assert slider.value == high and reached_engine(app, knob, high)
        await pilot.press("home")
        assert slider.value == low and reached_engine(app, knob, low)

        # typing an exact value: good, then bad ones that change nothing
        good = "3" if key != "rate" else "2.5"
        await pilot.press("enter")
        for ch in good:
            await pilot.press(ch)
        await pilot.press("enter")
        assert slider.value == float(good) and reached_engine(app, knob, float(good))
        assert app.focused is slider
        bad_inputs = ["abc", "-5", "99999999"] + (["2.5"] if knob.spec.integer else [])
        for bad in bad_inputs if key in ("maxsize", "rate") else []:
            await pilot.press("e")
            await pilot.press(*bad)
            await pilot.press("enter")
            assert slider.value == float(good), bad
            assert reached_engine(app, knob, float(good)), bad
            assert notes and notes[-1][1].get("title") == "value refused", bad
            assert notes[-1][0].startswith(f'{knob.label}: you typed "{bad}"; '), bad
            await pilot.press("escape")
            assert app.focused is slider

        # mouse: click both ends and the middle, then drag
        width = slider.content_size.width
        await pilot.click(f"#knob-{key}", offset=(width - 1, 0))
        assert slider.value == high and reached_engine(app, knob, high)
        await pilot.click(f"#knob-{key}", offset=(0, 0))
        assert slider.value == low and reached_engine(app, knob, low)
        await pilot.mouse_down(f"#knob-{key}", offset=(1, 0))
        await pilot.hover(f"#knob-{key}", offset=(width // 4, 0))
        quarter = slider.value
        x = width // 4
        expected = round((low + (high - low) * x / (width - 1)) / knob.step) * knob.step
        assert quarter == pytest.approx(expected)
        await pilot.hover(f"#knob-{key}", offset=(width - 2, 0))
        await pilot.mouse_up(f"#knob-{key}", offset=(width - 2, 0))
        assert quarter < slider.value < high or slider.value == high
        assert reached_engine(app, knob, slider.value)
        assert not slider.dragging

        # no session restarted: the ones streaming at the start are the same objects, and
        # their counters only went up
        for sid, (session, tokens_in) in before.items():
            assert app.engine.sessions[sid] is session
            assert session.tokens_in >= tokens_in and session.state != "queued"
        await pilot.press("q")


async def test_maxsize_change_reaches_running_sessions_quickly(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: len(streaming(app)) >= 3, pause=pilot.pause)
        running = {s.id: s for s in streaming(app)}
        app.query_one("#knob-maxsize", Slider).focus()
        await pilot.press("pageup")  # 8 -> 18
        snap_ = app.engine.snapshot()
        still = [s for s in snap_.sessions if s.id in running and not s.finished]
        assert still and all(s.maxsize == 18 for s in still)
        # the same sessions carry on: their counters only went up
        for s in still:
            assert s.tokens_in >= running[s.id].tokens_in
        await pilot.press("q")


async def test_limit_growth_lets_waiting_sessions_stream(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config)
    async with app.run_test(size=(120, 40)) as pilot:
        demo = app.engine.limiters["demo"]
        await wait_until(lambda: demo.in_use == 3 and demo.waiting >= 2, pause=pilot.pause)
        app.query_one("#knob-limit-demo", Slider).focus()
        await pilot.press("right", "right")
        backend = next(b for b in app.engine.snapshot().backends if b.name == "demo")
        assert backend.limit == 5
        await wait_until(lambda: demo.in_use == 5, pause=pilot.pause)
        await pilot.press("q")


async def test_slider_range_widens_to_a_larger_configured_value(fast_config: Config) -> None:
    config = fast_config.with_values({"limits.ollama": 200})
    app = SluiceApp(config=config, continuous=False)
    async with app.run_test(size=(120, 40)) as pilot:
        slider = app.query_one("#knob-limit-ollama", Slider)
        assert slider.value == 200 and slider.maximum == 200
        assert app.query_one("#knob-limit-claude", Slider).maximum == 64
        assert app.query_one("#knob-maxsize", Slider).maximum == 1024
        assert app.query_one("#knob-batch_max", Slider).maximum == 256
        await pilot.press("q")


@pytest.mark.parametrize("knob", KNOBS, ids=lambda k: k.key)
def test_typed_values_are_checked_against_the_shared_ranges(knob: KnobDef) -> None:
    assert parse_knob_value(knob, " 3 ") == 3
    bad_forms = ("16_0", "1_6", "١٢", "\uff11\uff12", "٣", "+3", "1e1", "0x10", "3 4", "²")
    for bad in ("", "abc", "-5", "1e99", "nan", "inf", "99999999", *bad_forms):
        with pytest.raises(ValueError, match=re.escape(knob.label)):
            parse_knob_value(knob, bad)
    if knob.spec.integer:
        with pytest.raises(ValueError, match="integer"):
            parse_knob_value(knob, "2.5")
    else:
        assert parse_knob_value(knob, "2.5") == 2.5
        assert parse_knob_value(knob, "2.") == 2.0
        with pytest.raises(ValueError, match='you typed "2,5"'):
            parse_knob_value(knob, "2,5")


async def test_only_ascii_digits_are_taken_as_a_typed_value() -> None:
    """`16_0` and Arabic-Indic `١٢` are refused with the one-line message, nothing changed
    (Python's int() reads them as 160 and 12)."""
    app = SluiceApp(config=Config(), continuous=False, live=False)
    notes = record_notes(app)
    allowed = BY_KEY["maxsize"].spec.describe()
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#knob-maxsize", Slider).focus()
        for typed in ("16_0", "١٢"):
            await pilot.press("enter", "backspace", *typed, "enter")
            assert notes[-1][0] == f'maxsize: you typed "{typed}"; {allowed}'
            await pilot.press("escape")
        assert app.engine.knob("queue.maxsize") == 16
        await pilot.press("q")


async def test_a_refused_typed_value_is_quoted_as_typed_with_what_is_allowed() -> None:
    app = SluiceApp(config=Config(), continuous=False)
    notes = record_notes(app)
    knob = BY_KEY["maxsize"]
    allowed = knob.spec.describe()
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#knob-maxsize", Slider).focus()
        for typed, shown in (
            ("abc", 'maxsize: you typed "abc"; ' + allowed),
            ("[b]7[/b]", 'maxsize: you typed "[b]7[/b]"; ' + allowed),  # never markup
            ("", "maxsize: nothing typed; " + allowed),
        ):
            await pilot.press("enter", "backspace", *typed, "enter")
            assert notes[-1][0] == shown
            assert notes[-1][1].get("markup", False) is False
            await pilot.press("escape")
        assert app.engine.knob("queue.maxsize") == 16  # nothing changed
        await pilot.press("q")
