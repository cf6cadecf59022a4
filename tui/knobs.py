"""The knobs panel: one slider per live knob with its exact value, and a typed-value editor.

Each slider is a live knob of the settings registry (engine/settings.py): its label, range,
slider cap and help line come from there; a value beyond the cap (from the config or typed)
widens that slider. A knob change goes straight to `Engine.set_knob`, which applies it to
running sessions at once.

A knob whose value differs from the one last saved (or loaded) is marked `*` beside its value
and in the panel's title until `s` saves it. A knob that reaches none of the sessions (in
`sluice monitor`, a workload with its own consumer makes `delay ms` moot) is dimmed with the
reason in its tooltip; it stays settable, since sessions started later may use it and `s`
saves it.

A knob driven by an `[autotune]` switch shows `auto` on its slider and moves by itself.
Moving it by hand makes it manual at the value chosen (the engine switches auto off in the
same call; the row shows it at once); `a` on the focused slider turns auto back on (or
off). Under the sliders (never in their grid), per auto knob: a line naming it with the
reason of its last move or what switched it off, and while it is auto its value and signal
plot lines (tui/autotune.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Input, Label

from sluice.engine.autotune.switches import DRIVES, SWITCH_OF
from sluice.engine.engine import Engine
from sluice.engine.settings import SETTINGS, Setting, live_settings
from sluice.engine.snapshot import AutoKnobSnapshot, EngineSnapshot
from sluice.tui.autotune import OFF_BY_A, OFF_BY_HAND, OFF_ELSEWHERE, AutoReason, PlotLine
from sluice.tui.fmt import clean, knob_value
from sluice.tui.readout import Readout
from sluice.tui.slider import Slider

__all__ = [
    "KNOBS",
    "KNOB_BY_KEY",
    "ApplyKnob",
    "KnobDef",
    "KnobEditor",
    "KnobRow",
    "KnobsPanel",
    "knob_defs",
    "parse_knob_value",
    "unused_reason",
]

TITLE = "knobs (Enter: type a value)"
# What a typed value may be: ASCII digits, a leading minus, for a decimal knob one point.
INTEGER = re.compile(r"-?[0-9]+")
DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
TITLE_UNSAVED = "knobs * = unsaved (s saves)"


@dataclass(frozen=True, slots=True)
class KnobDef:
    """One slider: the live knob it moves (its declaration in the settings registry) and the
    key its widgets are named by (`#knob-maxsize`, `#row-limit-demo`)."""

    spec: Setting[Any]

    @property
    def key(self) -> str:
        """The widget key: `limit-<backend>` for a backend's limit, else the config key."""
        table, _, key = self.spec.name.partition(".")
        return f"limit-{key}" if table == "limits" else key

    @property
    def label(self) -> str:
        """The slider's label (from the registry)."""
        return self.spec.label

    @property
    def backend(self) -> str | None:
        """The backend a limit knob caps, None for the other knobs."""
        table, _, key = self.spec.name.partition(".")
        return key if table == "limits" else None

    @property
    def step(self) -> float:
        """One Left/Right press."""
        return self.spec.step

    @property
    def slider_range(self) -> tuple[float, float]:
        """The slider's span: the minimum up to the registry's slider cap."""
        return self.spec.slider_range

    def read(self, knobs: Mapping[str, Any]) -> float:
        """This knob's value in a snapshot's `knobs` (by dotted config name)."""
        return float(knobs.get(self.spec.name, self.spec.default))

    def apply(self, engine: Engine, value: float) -> None:
        """Set the knob on the running engine (KnobError when the value is refused)."""
        engine.set_knob(self.spec.name, int(value) if self.spec.integer else value)


def knob_defs() -> tuple[KnobDef, ...]:
    """One slider per live numeric knob of the registry, in its order: a knob declared there
    gets its slider, its help line and its range here with no change to this file. On/off
    switches (`autotune.*`) have no slider: they show as `auto` on the slider they drive."""
    return tuple(KnobDef(setting) for setting in live_settings() if setting.numeric)


KNOBS: tuple[KnobDef, ...] = knob_defs()  # the built-in knobs, as this module was imported

KNOB_BY_KEY: dict[str, KnobDef] = {knob.key: knob for knob in KNOBS}

# Applies a knob's new value to the engine; False if the engine refused it.
ApplyKnob = Callable[[KnobDef, float], bool]


def unused_reason(
    knob: KnobDef, snap: EngineSnapshot, *, continuous: bool, delay_applies: bool
) -> str | None:
    """Why `knob` reaches none of the sessions in `snap` (finished ones count), or None.

    `continuous`: the demo count is kept up; `delay_applies`: some session uses the engine's
    built-in sleep consumer. The buffer knobs reach every session, so they always apply.
    """
    if knob.key == "delay_ms":
        return None if delay_applies else "not used by this workload: its consumer is its own"
    if knob.key == "sessions":
        return None if continuous else "no demo kept running (sluice monitor --demo keeps one)"
    backend = knob.backend or ("demo" if knob.key == "rate" else None)
    if backend is None or any(s.backend == backend for s in snap.sessions):
        return None
    return f"not used by this workload: no {backend} sessions"


def parse_knob_value(knob: KnobDef, text: str) -> float:
    """Parse a typed value; raise ValueError if it is not allowed, with one plain line
    quoting what was typed (as typed, not Python's repr) and saying what is allowed."""
    spec = knob.spec
    typed = text.strip()
    try:
        # Plain ASCII digits only: int() and float() also take `16_0` and other scripts'
        # digits (`١٢`), which a person did not mean as 160 or 12.
        if not (INTEGER if spec.integer else DECIMAL).fullmatch(typed):
            raise ValueError(typed)
        value: float = int(typed) if spec.integer else float(typed)
        spec.coerce(value)
    except ValueError:
        said = f'you typed "{clean(typed, limit=40)}"' if typed else "nothing typed"
        raise ValueError(f"{knob.label}: {said}; {spec.describe()}") from None
    return value


class KnobEditor(Input):
    """The box a knob's exact value is typed in; the footer says Enter applies it."""

    BINDINGS = [Binding("enter", "submit", "apply")]


class KnobRow(Horizontal):
    """Label, slider, exact value; Enter on the slider swaps the value for an input box."""

    BINDINGS = [
        Binding("escape", "cancel_edit", "cancel"),  # shown only while editing
        # `a` on a knob with an auto mode (shown in the footer); on another, says it has none.
        Binding("a", "toggle_auto", "auto on/off"),
        Binding("a", "no_auto", "auto on/off", show=False),
    ]

    def __init__(
        self,
        knob: KnobDef,
        value: float,
        apply: ApplyKnob,
        on_shown: Callable[[], None] | None = None,
        on_switched: Callable[[str, bool, str], None] | None = None,
        on_used: Callable[[Slider], None] | None = None,
    ) -> None:
        super().__init__(id=f"row-{knob.key}", classes="knob-row")
        self.knob = knob
        self.apply = apply
        self.on_shown = on_shown
        # told when this row turned its auto switch on/off, and how (autotune.OFF_BY_*)
        self.on_switched = on_switched
        self.on_used = on_used  # told when the user changed this knob (moved, typed, `a`)
        self.switch = SWITCH_OF.get(knob.spec.name)  # the [autotune] switch driving it
        self.saved = value  # the value in the config file; a different one is unsaved
        self.saved_auto = False  # its auto switch in the config file (set by the panel)
        self.unused: str | None = None  # why the knob reaches no session, if it does not
        self.mixed = False  # the attached nodes it goes to disagree on its value
        self._unused_told = False
        low, high = knob.slider_range
        self.slider = Slider(
            value, low, high, knob.step, integer=knob.spec.integer, id=f"knob-{knob.key}"
        )
        self.value_label = Readout("", classes="knob-value")
        self.editor = KnobEditor(
            classes="knob-input", id=f"input-{knob.key}", compact=True, select_on_focus=True
        )

    def compose(self) -> ComposeResult:
        """Name, slider, value (or the editor while typing)."""
        yield Label(self.knob.label, classes="knob-name")
        yield self.slider
        yield self.value_label
        yield self.editor

    def on_mount(self) -> None:
        """Show the starting value; the editor stays hidden until asked for."""
        self.editor.display = False
        self.slider.on_move = lambda _value: self.show_value()
        self.show_value()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Esc (and its footer hint) belongs to the editor: offered only while it is open;
        `a` toggles auto on a knob that has an auto mode, and says so on one that has not."""
        if action == "cancel_edit":
            return self.editing
        if action == "toggle_auto":
            return self.switch is not None and not self.editing
        if action == "no_auto":
            return self.switch is None and not self.editing
        return True

    @property
    def auto(self) -> bool:
        """True while auto-tune drives this knob (the slider shows `auto`)."""
        return self.slider.auto

    def set_auto(self, on: bool) -> None:
        """Show the knob as auto (moved by the engine) or manual."""
        if on != self.slider.auto:
            self.slider.auto = on
            self.set_class(on, "auto")
            if self.is_mounted:
                self.show_value()

    def action_no_auto(self) -> None:
        """`a` on a knob without an auto mode: say so."""
        self.app.notify(f"{self.knob.label} has no auto mode", title="auto")

    def action_toggle_auto(self) -> None:
        """`a`: hand the knob to auto-tune, or take it back (at its value now)."""
        if self.switch is None:
            return
        on = not self.auto
        if self.apply(KnobDef(SETTINGS[self.switch]), on):
            self._used()
            self.set_auto(on)
            if self.on_switched is not None:
                self.on_switched(self.switch, on, OFF_BY_A)

    def _used(self) -> None:
        if self.on_used is not None:
            self.on_used(self.slider)

    @property
    def editing(self) -> bool:
        """True while the exact-value editor is open."""
        return bool(self.editor.display)

    @property
    def unsaved(self) -> bool:
        """True when the value differs from the one last saved (or loaded), or its auto
        switch does. The value of a knob that stays auto is the engine's to choose, not
        a change of the user's: it does not count."""
        if self.switch is not None and self.auto != self.saved_auto:
            return True
        if self.auto and self.saved_auto:
            return False
        return self.slider.value != self.saved

    def show_value(self) -> None:
        """Write the slider's value beside it (maxsize 0 gets a warning, an unsaved one a *)."""
        value = self.slider.value
        if self.mixed:
            shown = Text("mixed", style="bold yellow")
            self.value_label.tooltip = "the nodes it goes to have different values"
        elif self.knob.key == "maxsize" and value == 0:
            shown = Text("0 ∞ !", style="bold red")
            self.value_label.tooltip = "0 = unbounded: the naive push mode, memory can grow"
        else:
            shown = Text(knob_value(value, self.knob.spec.integer))
            self.value_label.tooltip = None
        if self.unsaved:
            shown.append("*", style="bold yellow")
        self.value_label.update(shown)
        if self.on_shown is not None:
            self.on_shown()

    def mark_saved(self, value: float, auto: bool = False) -> None:
        """`value` (and the auto switch `auto`) is now what the config file holds."""
        self.saved = value
        self.saved_auto = auto
        self.show_value()

    def set_mixed(self, mixed: bool) -> None:
        """Show `mixed` instead of the value while the target's nodes disagree on it."""
        if mixed != self.mixed:
            self.mixed = mixed
            self.show_value()

    def set_unused(self, reason: str | None) -> None:
        """Dim the row (with `reason` as its tooltip) or light it up again (None)."""
        if reason == self.unused:
            return
        self.unused = reason
        self._unused_told = False
        self.set_class(reason is not None, "inactive")
        self.slider.inactive = reason is not None
        self.tooltip = None if reason is None else f"{self.knob.label}: {reason}"

    def sync(self, value: float) -> None:
        """Follow the engine's value without firing a change (unless the user holds it)."""
        slider = self.slider
        if slider.dragging or slider.pending or self.editing or value == slider.value:
            return
        self.slider.set_value(value)
        self.show_value()

    def on_slider_changed(self, event: Slider.Changed) -> None:
        """Hand the user's move to the engine (through `apply`) at once."""
        event.stop()
        slider = self.slider
        if slider.value != event.value or not slider.pending:
            return  # a later move supersedes this one, or `commit` already handed it on
        self.commit()

    def commit(self) -> None:
        """Hand the slider's pending value to the engine now: its Changed message may still
        be queued when a key for the whole app (`s`) is handled."""
        slider = self.slider
        if not slider.pending:
            return
        value = slider.value
        if self.apply(self.knob, value):
            slider.pending = False
            self._used()
            if self.auto and self.switch is not None:
                # A hand on an auto knob takes it over: the engine switched auto off in
                # the same call; show it now, not at the next snapshot.
                self.set_auto(False)
                if self.on_switched is not None:
                    self.on_switched(self.switch, False, OFF_BY_HAND)
            if self.unused is not None and not self._unused_told:
                self._unused_told = True  # once per dimming: a drag must not flood toasts
                self.app.notify(
                    f"{self.knob.label} set to {knob_value(value, self.knob.spec.integer)}"
                    f", but {self.unused}; it applies to sessions that use it and `s` saves it",
                    title="knob not in use",
                )
        self.show_value()

    def on_slider_edit_requested(self, event: Slider.EditRequested) -> None:
        """Open the editor with the current value selected."""
        event.stop()
        self.open_editor()

    def open_editor(self) -> None:
        """Swap the value for an input box and focus it."""
        self.value_label.display = False
        self.editor.display = True
        self.editor.value = knob_value(self.slider.value, self.knob.spec.integer)
        self.editor.focus()

    def close_editor(self) -> None:
        """Hide the input box and give focus back to the slider."""
        self.editor.display = False
        self.value_label.display = True
        self.slider.focus()

    def action_cancel_edit(self) -> None:
        """Escape: leave the editor, nothing changed."""
        if self.editing:
            self.close_editor()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Apply a good typed value; refuse a bad one with a message and change nothing."""
        event.stop()
        try:
            value = parse_knob_value(self.knob, event.value)
        except ValueError as exc:
            self.app.notify(str(exc), title="value refused", severity="error")
            return
        self.close_editor()
        self.slider.set_value(value, user=True)


class KnobsPanel(Vertical):
    """Every knob, in the order of KNOBS; the title says when some are unsaved."""

    def __init__(
        self, knobs: Mapping[str, Any], apply: ApplyKnob, *, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.rows = {
            knob.key: KnobRow(
                knob, knob.read(knobs), apply, self._show_title, self._switched, self.remember
            )
            for knob in knob_defs()
        }
        # The slider Tab returns to from the table: the one last used (changed), or the one
        # Tab last left; the first one until then.
        self.last_slider: Slider | None = None
        # Per switch, at the foot of the panel: a reason line naming the knob it shows
        # `auto` on first (maxsize, not batch_max, for the maxsize switch), then its value
        # and signal plot lines (shown while it is auto and has history).
        labels = {row.knob.spec.name: row.knob.label for row in self.rows.values()}
        keys = {row.knob.spec.name: key for key, row in self.rows.items()}
        self.reasons: dict[str, AutoReason] = {
            switch: AutoReason(labels.get(knobs_of[0], switch), id=f"reason-{keys[knobs_of[0]]}")
            for switch, knobs_of in DRIVES.items()
            if knobs_of[0] in keys
        }
        self._on: dict[str, bool] = {}
        self._off_by: dict[str, str] = {}  # switch -> what switched it off here (OFF_BY_*)
        for row in self.rows.values():  # the switches as loaded are the saved ones
            row.saved_auto = bool(knobs.get(row.switch, False)) if row.switch else False
        self._tracks: dict[str, AutoKnobSnapshot] = {}
        self.plots: dict[str, tuple[PlotLine, PlotLine]] = {
            switch: (
                PlotLine(switch, "value", label, id=f"plot-{name}-value"),
                PlotLine(switch, "signal", label, id=f"plot-{name}-signal"),
            )
            for switch, knobs_of in DRIVES.items()
            for name, label in ((switch.partition(".")[2], labels.get(knobs_of[0], switch)),)
        }
        self.plot_lines = [line for pair in self.plots.values() for line in pair]
        self.border_title = TITLE
        self.sync_auto(knobs)

    def compose(self) -> ComposeResult:
        """The sliders (a two-column grid on a narrow screen), then per auto knob its
        reason line and plot: together, under every slider, never in the grid beside an
        unrelated one."""
        with Grid(id="knob-grid"):
            yield from self.rows.values()
        for switch, (value, signal) in self.plots.items():
            if switch in self.reasons:
                yield self.reasons[switch]
            with Horizontal(classes="plot-pair"):
                yield value
                yield signal

    def on_mount(self) -> None:
        """Reason lines and the plot stay hidden until a knob is auto."""
        self._show_reasons()
        for line in self.plot_lines:
            line.show(None)

    def commit_pending(self) -> None:
        """Hand every slider move not yet handed on to the engine (before a save)."""
        for row in self.rows.values():
            row.commit()

    def sync_auto(self, knobs: Mapping[str, Any]) -> None:
        """Mark the rows whose switch is on in `knobs` as auto (a row held by the user keeps
        its state until the engine has seen the move)."""
        on = {switch: bool(knobs.get(switch, False)) for switch in DRIVES}
        for switch, now in on.items():
            if now:
                self._off_by.pop(switch, None)  # a later off names its own cause
            elif self._on.get(switch) and switch not in self._off_by:
                self._off_by[switch] = OFF_ELSEWHERE  # not by this app: said, not just gone
        self._on = on
        for row in self.rows.values():
            if row.switch is not None and not (row.slider.dragging or row.slider.pending):
                row.set_auto(self._on[row.switch])
        if self.is_mounted:
            self._show_reasons()

    def show_auto(self, tracks: tuple[AutoKnobSnapshot, ...]) -> None:
        """The snapshot's auto-tune tracks: the reason lines and the plot."""
        self._tracks = {track.switch: track for track in tracks}
        self._show_reasons()

    def _show_reasons(self) -> None:
        """Each reason line, and each plot while its knob is auto (hidden once it is not:
        its last auto values beside a value set by hand would read as the knob's)."""
        for switch, reason in self.reasons.items():
            reason.show(
                self._on.get(switch, False), self._tracks.get(switch), self._off_by.get(switch)
            )
        for line in self.plot_lines:
            line.show(self._tracks.get(line.switch) if self._on.get(line.switch) else None)

    def _switched(self, switch: str, on: bool, cause: str) -> None:
        """A row turned `switch` on or off (`cause`: how, autotune.OFF_BY_*): every row it
        drives, its reason line and its plot follow."""
        self._on[switch] = on
        if on:
            self._off_by.pop(switch, None)
        else:
            self._off_by[switch] = cause
        for row in self.rows.values():
            if row.switch == switch:
                row.set_auto(on)
        self._show_reasons()

    def remember(self, slider: Slider) -> None:
        """`slider` was just used (or left with Tab): Tab from the table returns to it."""
        self.last_slider = slider

    def slider_to_return_to(self) -> Slider:
        """The slider Tab from elsewhere focuses: the last one used, else the first."""
        last = self.last_slider
        if last is not None and last.is_attached:
            return last
        return self.query(Slider).first()

    @property
    def unsaved(self) -> list[str]:
        """Labels of the knobs whose value differs from the saved one; where only the auto
        switch does, said so (`claude lim (auto on)`)."""
        out = []
        for row in self.rows.values():
            if not row.unsaved:
                continue
            only_switch = row.switch is not None and row.auto != row.saved_auto
            if only_switch and (row.auto or row.slider.value == row.saved):
                out.append(f"{row.knob.label} (auto {'on' if row.auto else 'off'})")
            else:
                out.append(row.knob.label)
        return out

    def _show_title(self) -> None:
        title = TITLE_UNSAVED if self.unsaved else TITLE
        if self.border_title != title:
            self.border_title = title

    def mark_saved(self, knobs: Mapping[str, Any]) -> None:
        """`knobs` were just written to the config file: no knob is unsaved any more."""
        for row in self.rows.values():
            auto = bool(knobs.get(row.switch, False)) if row.switch else False
            row.mark_saved(row.knob.read(knobs), auto)

    def sync(self, knobs: Mapping[str, Any]) -> None:
        """Follow the engine's knobs (changed by a workload, calibration, auto-tune or a
        refused set), the auto switches included."""
        for row in self.rows.values():
            row.sync(row.knob.read(knobs))
        self.sync_auto(knobs)

    def row(self, key: str) -> KnobRow:
        """The row of knob `key` (e.g. 'limit-demo')."""
        return self.rows[key]
