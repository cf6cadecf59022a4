"""`render_key`: what decides how a cell or readout value renders, as a hashable key.

Two values with equal keys render the same, so a widget can skip a repaint (or reuse a
rendered cell) when the key has not changed. Rich's `Text.__eq__` compares only the plain
text and the spans, not the base style, so it cannot serve alone.
"""

from __future__ import annotations

from collections.abc import Hashable

from rich.console import Group
from rich.text import Text

__all__ = ["render_key"]


def render_key(value: object) -> Hashable:
    """A hashable key equal for values that render alike; unknown renderables get their id,
    so they count as changed whenever the object is a new one."""
    if isinstance(value, Text):
        return (
            Text,
            value.plain,
            value.style,
            tuple(value.spans),
            value.justify,
            value.overflow,
            value.no_wrap,
            value.end,
        )
    if isinstance(value, Group):
        return (Group, tuple(render_key(part) for part in value.renderables))
    if isinstance(value, Hashable):
        return (type(value), value)
    return (type(value), id(value))
