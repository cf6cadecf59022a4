"""The app's auto-tune views at the foot of the knobs panel: per auto knob, a reason line
naming it, and the plot lines of its value over the last minutes beside the signal that
drives it.

Both are fed the snapshot's `autotune` tracks (engine/snapshot.py `AutoKnobSnapshot`), so
they show a remote engine's auto knobs as well as the one in this process.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

from sluice.engine.snapshot import AutoKnobSnapshot
from sluice.tui import fmt
from sluice.tui.panels import bar_levels
from sluice.tui.readout import Readout

__all__ = ["OFF_BY_A", "OFF_BY_HAND", "AutoReason", "PlotLine", "spark_text"]

BARS = "▁▂▃▄▅▆▇█"
LABEL_WIDTH = 12
VALUE_WIDTH = 16


def spark_text(values: Sequence[float | None], width: int) -> str:
    """The last `width` values as a one-line sparkline (a gap for a missing value)."""
    tail = list(values)[-width:] if width > 0 else []
    return "".join(" " if level is None else BARS[level] for level in bar_levels(tail, len(BARS)))


# What turned an auto knob's switch off, as the reason line says it (`KnobsPanel`).
OFF_BY_A = "a"  # `a` on its slider
OFF_BY_HAND = "hand"  # a slider move (or a typed value) took it over
OFF_ELSEWHERE = "elsewhere"  # seen off in a snapshot: the API, another viewer, a node


# An auto knob no session has given a signal for (a claude limit on a demo-only run): it
# cannot move, and "waiting for a window" would promise that it is about to.
NO_SIGNAL_YET = "no signal yet: it moves once sessions it drives run"


class AutoReason(Readout):
    """One line per auto knob at the foot of the knobs panel, naming the knob: the reason of
    its last move (`claude lim  auto: -10%: 429 at 18:04:12`), `auto (led by web-2)` on a
    cluster node whose auto-tune leader is another node, or `manual` and what switched it
    off; hidden for a knob never auto in this run. Cut with `…` where the panel ends."""

    DEFAULT_CSS = """
    AutoReason {
        height: 1;
        color: $text-muted;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, label: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.label = label

    def show(self, on: bool, track: AutoKnobSnapshot | None, off_by: str | None = None) -> None:
        """Redraw for the switch's state, its track (None: no move yet) and, when off,
        what switched it off here (OFF_BY_A, OFF_BY_HAND; None: not known, e.g. the API)."""
        reason = track.reason if track is not None else None
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append(f"{self.label:<{LABEL_WIDTH - 1}}", style="bold cyan")  # as the sliders
        text.append(" ")
        if on and track is not None and track.led_by:
            text.append(fmt.clean(f"auto (led by {track.led_by})"))
        elif on:
            heard = track is not None and any(p[2] is not None for p in track.points)
            waiting = "waiting for a full window of signals" if heard else NO_SIGNAL_YET
            detail = reason or waiting
            if track is not None and track.retry_after:
                detail += f" (retry-after {track.retry_after:.1f}s)"
            text.append("auto: " + fmt.clean(detail))
        else:
            text.append("manual", style="bold")
            if off_by == OFF_BY_A:
                text.append(" (auto off with a)")
            elif off_by == OFF_BY_HAND:
                text.append(" (set by hand)")
            elif off_by == OFF_ELSEWHERE:
                text.append(" (auto off elsewhere: the API or another viewer)")
            else:
                text.append(" (auto off)")
            if reason:
                text.append("; last auto move " + fmt.clean(reason))
        self.update(text)
        self.display = on or track is not None or off_by is not None


class PlotLine(Widget):
    """One line of the auto plot: an auto knob's value over the last minutes (`part`
    "value"), or the signal that drives it ("signal": 429s per point, TTFT p50 with the
    baseline, consumer call ms), as a sparkline with the latest figure. One line each, under
    the knob's reason line: stacked on a wide screen, value beside signal where the knobs
    are a two-column grid. Shown only while the knob is auto (an old plot beside a value
    set by hand would read as the knob's)."""

    DEFAULT_CSS = """
    PlotLine {
        height: 1;
    }
    """

    def __init__(self, switch: str, part: str, label: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.switch = switch
        self.part = part
        self.label = label
        self.track: AutoKnobSnapshot | None = None

    def show(self, track: AutoKnobSnapshot | None) -> None:
        """Redraw for `track` (hidden while there is none or it has no points yet)."""
        shown = track if track is not None and track.points else None
        self.display = shown is not None
        if shown != self.track:
            self.track = shown
            self.refresh()

    def render(self) -> Text:
        """Label, sparkline, latest figure."""
        out = Text(no_wrap=True, overflow="crop")
        track = self.track
        if track is None:
            return out
        width = max(4, (self.size.width or 40) - LABEL_WIDTH - VALUE_WIDTH)
        if self.part == "value":
            values: list[float | None] = [p[1] for p in track.points]
            out.append(f"{self.label[: LABEL_WIDTH - 1]:<{LABEL_WIDTH}}", style="bold")
            out.append(spark_text(values, width), style="cyan" if track.on else "grey50")
            figure = fmt.knob_value(track.points[-1][1], True)
        else:
            values = [p[2] for p in track.points]
            # A space first: beside the value line (two-column knobs) its figure would touch.
            out.append(f"{' ↳ ' + track.signal[: LABEL_WIDTH - 4]:<{LABEL_WIDTH}}")
            out.append(spark_text(values, width), style="yellow")
            figure = _signal_figure(track)
        out.append(f" {figure:>{VALUE_WIDTH - 1}}")
        return out


def _signal_figure(track: AutoKnobSnapshot) -> str:
    """The latest signal, with the TTFT baseline beside it: `412 vs 180 ms`."""
    latest = next((p[2] for p in reversed(track.points) if p[2] is not None), None)
    if latest is None:
        return "-"
    if track.baseline is not None:
        return f"{latest:.0f} vs {track.baseline:.0f} ms"
    return f"{latest:.0f}" if track.signal == "429s" else f"{latest:.3g} ms"
