"""Knobs by their dotted config names: one registry, validated, atomic, applied at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.engine.config import Config, ConfigError, load_config, parse_config
from sluice.engine.config_save import save_config
from sluice.engine.engine import Engine, KnobError
from sluice.engine.report import to_json_dict
from sluice.engine.settings import (
    BACKENDS,
    SETTINGS,
    Setting,
    SettingError,
    live_settings,
    lookup,
    register,
    unregister,
)


def test_every_live_knob_has_a_label_a_help_line_and_a_slider_span() -> None:
    for setting in live_settings():
        assert setting.label and setting.help
        setting.coerce(setting.default)
        if setting.kind is bool:  # an on/off switch (autotune.*): no slider of its own
            continue
        low, high = setting.slider_range
        assert low < high


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
        before = dict(engine.knobs)
        with pytest.raises(KnobError, match=r"limits\.demo = 0: must be an integer from 1"):
            engine.set_knobs({"queue.maxsize": 64, "limits.demo": 0})
        assert dict(engine.knobs) == before
        assert engine.limiters["demo"].limit == before["limits.demo"]
        with pytest.raises(KnobError, match="no such knob"):
            engine.set_knobs({"queue.maxsize": 64, "queue.bogus": 1})
        assert dict(engine.knobs) == before


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
    with pytest.raises(ValueError, match="declared twice"):
        register(Setting("queue.maxsize", int, 1, "again"))
    with pytest.raises(SettingError):
        register(Setting("queue.test_bad_default", int, -1, "bad", minimum=0, maximum=3))
    assert "queue.test_bad_default" not in SETTINGS


@pytest.fixture
def extra_knob() -> Iterator[Setting[int]]:
    """A knob that exists only in this test, declared through the registry alone."""
    setting = register(
        Setting(
            "queue.test_extra",
            int,
            3,
            "a knob added by a test",
            minimum=1,
            maximum=9,
            live=True,
            label="extra",
            slider_max=9,
        )
    )
    yield setting
    unregister(setting.name)


async def test_a_knob_added_to_the_registry_alone_is_validated_saved_set_and_shown(
    extra_knob: Setting[int], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"\[queue\] test_extra = 10: must be an integer from 1"):
        parse_config({"queue": {"test_extra": 10}})
    path = tmp_path / "config.toml"
    path.write_text("[queue]\ntest_extra = 5  # mine\n")
    config = load_config(path)
    assert config[extra_knob] == 5
    async with Engine(config) as engine:
        assert engine.knobs["queue.test_extra"] == 5
        engine.set_knob("queue.test_extra", 7)
        with pytest.raises(KnobError, match="must be an integer from 1 to 9"):
            engine.set_knob("queue.test_extra", 0)
        snap = engine.snapshot()
        assert snap.knobs["queue.test_extra"] == 7
        assert to_json_dict(snap)["knobs"]["test_extra"] == 7
        save_config(engine.tuned_config())
    assert load_config(path)[extra_knob] == 7
    assert "test_extra = 7  # mine" in path.read_text()


@pytest.fixture
def flag_and_list() -> Iterator[tuple[Setting[bool], Setting[tuple[str, ...]]]]:
    """A true/false setting and a list-of-names setting, declared by this test only."""
    flag = register(Setting("queue.test_flag", bool, False, "a switch"))
    names = register(
        Setting("queue.test_names", tuple, ("claude",), "some backends", choices=BACKENDS)
    )
    yield flag, names
    unregister(flag.name)
    unregister(names.name)


def test_booleans_and_lists_are_checked_and_saved_as_toml(
    flag_and_list: tuple[Setting[bool], Setting[tuple[str, ...]]], tmp_path: Path
) -> None:
    flag, names = flag_and_list
    with pytest.raises(ConfigError, match=r"test_flag = 1: must be true or false"):
        parse_config({"queue": {"test_flag": 1}})
    with pytest.raises(ConfigError, match=r"test_flag = \"yes\": must be true or false"):
        parse_config({"queue": {"test_flag": "yes"}})
    for bad in (["claude", "claude"], ["nope"], "claude", [1], [""]):
        with pytest.raises(ConfigError, match=r"test_names = .*: must be a list of distinct names"):
            parse_config({"queue": {"test_names": bad}})
    config = parse_config({"queue": {"test_flag": True, "test_names": ["ollama", "demo"]}})
    assert config[flag] is True
    assert config[names] == ("ollama", "demo")
    assert parse_config({"queue": {"test_names": []}})[names] == ()
    path = tmp_path / "config.toml"
    path.write_text("[queue]\ntest_flag = false\n")
    save_config(config.with_values({}), path)
    again = load_config(path)
    assert again[flag] is True and again[names] == ("ollama", "demo")
    assert "test_names = [" in path.read_text()


def test_a_saved_list_replaces_its_line_and_keeps_the_comments(
    flag_and_list: tuple[Setting[bool], Setting[tuple[str, ...]]], tmp_path: Path
) -> None:
    _, names = flag_and_list
    path = tmp_path / "config.toml"
    path.write_text('# top\n[queue]\ntest_names = ["claude"]  # shared ones\n')
    save_config(load_config(path).with_values({names.name: ["ollama"]}), path, overwrite=True)
    text = path.read_text()
    assert "# top\n" in text and 'test_names = ["ollama"]  # shared ones\n' in text
