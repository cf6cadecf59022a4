"""The app's auto-tune views: the reason line under an auto knob's slider, and the plot of
each auto knob's value over the last minutes beside the signal that drives it.

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

__all__ = ["AutoPlot", "AutoReason", "spark_text"]

BARS = "▁▂▃▄▅▆▇█"
LABEL_WIDTH = 12
VALUE_WIDTH = 16


def spark_text(values: Sequence[float | None], width: int) -> str:
    """The last `width` values as a one-line sparkline (a gap for a missing value)."""
    tail = list(values)[-width:] if width > 0 else []
    known = [v for v in tail if v is not None]
    if not known:
        return " " * len(tail)
    levels = iter(bar_levels(known, len(BARS)))
    return "".join(BARS[next(levels)] if v is not None else " " for v in tail)


class AutoReason(Readout):
    """One line under an auto knob's slider: `auto: -10%: 429 at 18:04:12`, or `manual`
    once a hand took it over; empty (and hidden) for a knob never auto in this run."""

    DEFAULT_CSS = """
    AutoReason {
        height: 1;
        padding-left: 11;
        color: $text-muted;
    }
    """

    def show(self, on: bool, track: AutoKnobSnapshot | None) -> None:
        """Redraw for the switch's state and its track (None: no move yet)."""
        reason = track.reason if track is not None else None
        if on:
            text = Text("auto", style="bold cyan")
            detail = reason or "waiting for a full window of signals"
            if track is not None and track.retry_after:
                detail += f" (retry-after {track.retry_after:.1f}s)"
            text.append(": " + fmt.clean(detail))
        else:
            text = Text("manual", style="bold")
            if reason:
                text.append(": set by hand; last auto move " + fmt.clean(reason))
        self.update(text)
        self.display = on or track is not None


class AutoPlot(Widget):
    """Two lines per auto knob: its value over the last minutes, then its signal (429s per
    point, TTFT p50 with the baseline, consumer call ms), each with its latest figure."""

    DEFAULT_CSS = """
    AutoPlot {
        height: auto;
        border-top: solid $primary 30%;
    }
    """

    def __init__(self, labels: dict[str, str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._labels = labels  # knob name -> slider label
        self._tracks: tuple[AutoKnobSnapshot, ...] = ()

    def show(self, tracks: tuple[AutoKnobSnapshot, ...]) -> None:
        """Redraw from the snapshot's tracks (only when they changed)."""
        shown = tuple(t for t in tracks if t.points)
        if shown == self._tracks:
            return
        self._tracks = shown
        self.display = bool(shown)
        self.styles.height = 2 * len(shown)
        self.refresh(layout=True)

    def render(self) -> Text:
        """The plot lines."""
        width = max(4, (self.size.width or 40) - LABEL_WIDTH - VALUE_WIDTH)
        out = Text(no_wrap=True, overflow="crop")
        for n, track in enumerate(self._tracks):
            values = [p[1] for p in track.points]
            signals = [p[2] for p in track.points]
            label = self._labels.get(track.knob, track.knob)
            if n:
                out.append("\n")
            out.append(f"{label[: LABEL_WIDTH - 1]:<{LABEL_WIDTH}}", style="bold")
            out.append(spark_text(values, width), style="cyan" if track.on else "grey50")
            out.append(f" {fmt.knob_value(values[-1], True):>{VALUE_WIDTH - 1}}")
            out.append("\n")
            out.append(f"{'  ' + track.signal[: LABEL_WIDTH - 3]:<{LABEL_WIDTH}}")
            out.append(spark_text(signals, width), style="yellow")
            out.append(f" {_signal_figure(track):>{VALUE_WIDTH - 1}}")
        return out


def _signal_figure(track: AutoKnobSnapshot) -> str:
    """The latest signal, with the TTFT baseline beside it: `412 vs 180 ms`."""
    latest = next((p[2] for p in reversed(track.points) if p[2] is not None), None)
    if latest is None:
        return "-"
    if track.baseline is not None:
        return f"{latest:.0f} vs {track.baseline:.0f} ms"
    return f"{latest:.0f}" if track.signal == "429s" else f"{latest:.3g} ms"
