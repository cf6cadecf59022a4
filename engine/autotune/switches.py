"""Which knobs each auto-tune switch drives, and the switches a hand-set value turns off."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["DRIVES", "SWITCH_OF", "manual_overrides"]

# switch -> the knobs it moves (the first is the one its slider shows `auto` on)
DRIVES: Mapping[str, tuple[str, ...]] = {
    "autotune.claude": ("limits.claude",),
    "autotune.ollama": ("limits.ollama",),
    "autotune.maxsize": ("queue.maxsize", "queue.batch_max"),
}
SWITCH_OF: Mapping[str, str] = {knob: switch for switch, knobs in DRIVES.items() for knob in knobs}


def manual_overrides(names: Iterable[str], current: Mapping[str, Any]) -> list[str]:
    """The switches now on that a hand-set of knobs `names` turns off: a person (or a PATCH)
    who sets an auto knob takes it over at that value, unless the same set names the switch."""
    names = list(names)
    off = []
    for name in names:
        switch = SWITCH_OF.get(name)
        if switch and current.get(switch) and switch not in names and switch not in off:
            off.append(switch)
    return off
