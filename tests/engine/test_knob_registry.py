"""Knobs by their dotted config names: one registry, validated, atomic, applied at once."""

from __future__ import annotations

import pytest

from sluice.engine.config import Config
from sluice.engine.engine import Engine, KnobError
from sluice.engine.settings import SETTINGS, Setting, SettingError, live_settings, lookup


def test_every_live_knob_has_a_label_a_help_line_and_a_slider_span() -> None:
    for setting in live_settings():
        assert setting.label and setting.help
        low, high = setting.slider_range
        assert low < high
        setting.coerce(setting.default)


def test_values_are_checked_by_type_and_range() -> None:
    maxsize = SETTINGS["queue.maxsize"]
    assert maxsize.coerce(0) == 0
    for bad in (-1, 1025, 1.5, "8", True, None, float("nan")):
        with pytest.raises(SettingError, match="integer from 0 to 1024"):
            maxsize.coerce(bad)
    rate = SETTINGS["demo.rate"]
    assert rate.coerce(7) == 7.0 and isinstance(rate.coerce(7), float)
    with pytest.raises(SettingError):
        rate.coerce(float("inf"))


def test_an_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(SettingError, match=r"did you mean queue\.maxsize"):
        lookup("queue.maxsise")


async def test_set_knobs_checks_every_value_before_changing_any() -> None:
    async with Engine(Config()) as engine:
        before = dict(engine.knob_values)
        with pytest.raises(KnobError, match=r"limits\.demo = 0: must be an integer from 1"):
            engine.set_knobs({"queue.maxsize": 64, "limits.demo": 0})
        assert dict(engine.knob_values) == before
        assert engine.limiters["demo"].limit == before["limits.demo"]
        with pytest.raises(KnobError, match="no such knob"):
            engine.set_knobs({"queue.maxsize": 64, "queue.bogus": 1})
        assert dict(engine.knob_values) == before


async def test_set_knobs_applies_to_running_sessions_and_tells_listeners() -> None:
    async with Engine(Config()) as engine:
        seen: list[tuple[str, object]] = []
        stop = engine.on_knob_change(lambda name, value: seen.append((name, value)))
        session = engine.add_session("p", "demo")
        stored = engine.set_knobs({"queue.maxsize": 3, "limits.demo": 9, "demo.rate": 5})
        assert stored == {"queue.maxsize": 3, "limits.demo": 9, "demo.rate": 5.0}
        assert session.buffer.maxsize == 3
        assert engine.limiters["demo"].limit == 9
        assert engine.demo.rate == 5.0
        assert seen == [("queue.maxsize", 3), ("limits.demo", 9), ("demo.rate", 5.0)]
        stop()
        engine.set_knob("queue.maxsize", 4)
        assert len(seen) == 3
        engine.cancel_all()


def test_a_setting_declared_twice_or_with_a_bad_default_is_refused() -> None:
    from sluice.engine.settings import register

    with pytest.raises(ValueError, match="declared twice"):
        register(Setting("queue.maxsize", int, 1, "again"))
    with pytest.raises(SettingError):
        register(Setting("queue.test_bad_default", int, -1, "bad", minimum=0, maximum=3))
    assert "queue.test_bad_default" not in SETTINGS
