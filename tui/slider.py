"""Slider: a one-line horizontal slider for a number, driven by keyboard and mouse.

Textual ships no slider, so Sluice has its own. It posts `Slider.Changed` only when the user
moves it (keys, click, drag or `set_value(..., user=True)`), never when the program sets it,
so syncing it from the engine or mounting it fires nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widget import Widget

__all__ = ["Slider", "snap"]


def snap(value: float, step: float, minimum: float, maximum: float, moves: int) -> float:
    """Move `value` by `moves` steps on the grid of multiples of `step`, clamped to the range.

    An off-grid value first snaps to the grid in the direction of travel, so 2.5 with step 1
    goes to 3 on the right and to 2 on the left.
    """
    if moves == 0:
        return min(max(value, minimum), maximum)
    ratio = value / step
    base = math.floor(ratio + 1e-9) if moves > 0 else math.ceil(ratio - 1e-9)
    new = (base + moves) * step
    return min(max(new, minimum), maximum)


class Slider(Widget, can_focus=True):
    """A horizontal slider from `minimum` to `maximum` moving by `step` (ten steps a page)."""

    BINDINGS = [
        Binding("left,h", "move(-1)", "less", show=False),
        Binding("right,l", "move(1)", "more", show=False),
        Binding("pagedown", "move(-10)", "-10", show=False),
        Binding("pageup", "move(10)", "+10", show=False),
        Binding("home", "extreme(-1)", "min", show=False),
        Binding("end", "extreme(1)", "max", show=False),
        Binding("enter,e", "edit", "type a value", show=True),
        Binding("up", "app.focus_previous", "previous", show=False),
        Binding("down", "app.focus_next", "next", show=False),
    ]

    DEFAULT_CSS = """
    Slider {
        height: 1;
        width: 1fr;
        min-width: 8;
    }
    """

    class Changed(Message):
        """The user moved the slider to `value`."""

        def __init__(self, slider: Slider, value: float) -> None:
            super().__init__()
            self.slider = slider
            self.value = value

        @property
        def control(self) -> Slider:
            """The slider that changed."""
            return self.slider

    class EditRequested(Message):
        """The user asked to type an exact value (Enter or `e` on the slider)."""

        def __init__(self, slider: Slider) -> None:
            super().__init__()
            self.slider = slider

        @property
        def control(self) -> Slider:
            """The slider to edit."""
            return self.slider

    def __init__(
        self,
        value: float,
        minimum: float,
        maximum: float,
        step: float = 1,
        *,
        integer: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        if maximum <= minimum:
            raise ValueError(f"slider maximum {maximum} must be above minimum {minimum}")
        self.minimum = min(minimum, value)
        self.maximum = max(maximum, value)
        self.step = step
        self.integer = integer
        self._value = value
        self._dragging = False
        self._inactive = False
        self._auto = False
        self.pending = False  # a user change not yet handled by the owner
        # Called at once with the new value when the user moves the slider (Changed follows
        # as a message): an owner showing the value repaints it in the slider's own frame.
        self.on_move: Callable[[float], None] | None = None

    # -- value -----------------------------------------------------------------------------

    @property
    def value(self) -> float:
        """The current value."""
        return self._value

    @property
    def dragging(self) -> bool:
        """True while the mouse holds the slider."""
        return self._dragging

    @property
    def inactive(self) -> bool:
        """True when what the slider sets is not in use: it is drawn dim, still movable."""
        return self._inactive

    @inactive.setter
    def inactive(self, inactive: bool) -> None:
        if inactive != self._inactive:
            self._inactive = inactive
            self.refresh()

    @property
    def auto(self) -> bool:
        """True while auto-tune moves the value: the track is drawn cyan, marked `auto`."""
        return self._auto

    @auto.setter
    def auto(self, auto: bool) -> None:
        if auto != self._auto:
            self._auto = auto
            self.refresh()

    def set_value(self, value: float, *, user: bool = False) -> None:
        """Set the value, widening the range if it lies outside; post Changed if `user`."""
        if self.integer:
            value = round(value)
        if value > self.maximum:
            self.maximum = value
        if value < self.minimum:
            self.minimum = value
        if value == self._value:
            return
        self._value = value
        self.refresh()
        if user:
            self.pending = True
            if self.on_move is not None:
                self.on_move(value)
            self.post_message(self.Changed(self, value))

    def action_move(self, moves: int) -> None:
        """Move by `moves` steps."""
        self.set_value(snap(self._value, self.step, self.minimum, self.maximum, moves), user=True)

    def action_extreme(self, direction: int) -> None:
        """Jump to the minimum (direction < 0) or the maximum."""
        self.set_value(self.maximum if direction > 0 else self.minimum, user=True)

    def action_edit(self) -> None:
        """Ask the owner to open the exact-value editor."""
        self.post_message(self.EditRequested(self))

    # -- geometry and drawing ---------------------------------------------------------------

    def _track_width(self) -> int:
        return max(2, self.content_size.width)

    def fraction(self) -> float:
        """Where the value sits on the track, 0.0 to 1.0."""
        span = self.maximum - self.minimum
        return 0.0 if span <= 0 else (self._value - self.minimum) / span

    def value_at(self, x: int) -> float:
        """The value a click at column `x` of the track means, snapped to the step grid."""
        width = self._track_width()
        x = min(max(x, 0), width - 1)
        raw = self.minimum + (self.maximum - self.minimum) * x / (width - 1)
        stepped = round(raw / self.step) * self.step
        return min(max(stepped, self.minimum), self.maximum)

    def render(self) -> Text:
        """The track: filled part, the knob, the rest."""
        width = self._track_width()
        knob = round(self.fraction() * (width - 1))
        text = Text(no_wrap=True, overflow="crop")
        focused = self.has_focus
        if self._inactive:
            fill_style, knob_style, rest_style = "grey50", "grey62", "grey30"
        else:
            colour = "cyan" if self._auto else "green"
            fill_style = f"bold {colour}" if focused else colour
            knob_style = "bold white" if focused else "bright_white"
            rest_style = "grey50"
        text.append("━" * knob, style=fill_style)
        text.append("●" if focused else "○", style=knob_style)
        text.append("─" * (width - knob - 1), style=rest_style)
        if self._auto and width >= 10:
            # `auto` over the end of the track away from the knob, so the knob stays visible.
            at = 0 if knob > width // 2 else width - 4
            text = text[:at] + Text("auto", style="bold reverse cyan") + text[at + 4 :]
        return text

    def on_focus(self) -> None:
        """Redraw the knob to show focus."""
        self.refresh()

    def on_blur(self) -> None:
        """Redraw the knob without focus."""
        self.refresh()

    # -- mouse -----------------------------------------------------------------------------

    def on_mouse_down(self, event: events.MouseDown) -> None:
        """Jump to the clicked spot and start dragging."""
        if event.button != 1:
            return
        self.focus()
        self._dragging = True
        self.capture_mouse()
        self.set_value(self.value_at(event.x), user=True)
        event.stop()

    def on_mouse_move(self, event: events.MouseMove) -> None:
        """Follow the mouse while dragging."""
        if self._dragging:
            self.set_value(self.value_at(event.x), user=True)
            event.stop()

    def on_mouse_up(self, event: events.MouseUp) -> None:
        """Stop dragging."""
        if self._dragging:
            self._dragging = False
            self.release_mouse()
            event.stop()
