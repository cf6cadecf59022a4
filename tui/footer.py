"""The footer: Textual's, keeping the keys that matter when the line is too short for all.

Textual's footer lays every shown key out in a row and lets the ones past the edge fall off,
so on a narrow terminal (or with a slider's own key added in front) `? help` and `q quit`
went first. This one shows them by rank instead, and leaves the highest ranks out first:
help and quit (always there), the focused widget's own keys next, then the app's keys from
the most to the least used (README, "The app"), the palette docked on the right. While
text is typed into a box (a knob's exact value), the app's letter keys would type, so only
the box's own keys are shown (Enter applies, Esc cancels).
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Input
from textual.widgets._footer import FooterKey

__all__ = ["RANKS", "SluiceFooter", "keep_by_rank"]

# Lower ranks stay longer; an action not named here ranks with the focused widget's keys.
RANKS: dict[str, int] = {
    "help": 0,
    "quit": 0,
    "save": 2,
    "pause_display": 3,
    "resume_display": 3,
    "cancel_selected": 4,
    "add_sessions": 5,
    "command_palette": 6,
    "filter": 7,
    "calibrate": 8,
}
FOCUSED_RANK = 1  # the focused widget's own keys (a slider's Enter, a box's Enter and Esc)


def keep_by_rank(widths: list[tuple[int, int]], room: int) -> list[bool]:
    """Which of the items `(rank, width)` to keep in `room` cells: the highest ranks are
    left out first (the rightmost of a rank first); rank 0 always stays."""
    keep = [True] * len(widths)
    total = sum(width for _, width in widths)
    order = sorted(range(len(widths)), key=lambda i: (-widths[i][0], -i))
    for i in order:
        if total <= room or widths[i][0] == 0:
            break
        keep[i] = False
        total -= widths[i][1]
    return keep


def _rank(binding: Binding, own: bool) -> int:
    """A shown key's rank: the focused widget's own keys FOCUSED_RANK, the app's by RANKS."""
    return FOCUSED_RANK if own else RANKS.get(binding.action, FOCUSED_RANK)


class SluiceFooter(Footer):
    """The app's footer: the keys that fit, by rank (RANKS), help and quit always."""

    def __init__(self) -> None:
        super().__init__()
        self._room = 0  # the width the keys were last chosen for

    def _shown_bindings(self) -> list[tuple[Binding, bool, str, bool]]:
        """(binding, enabled, tooltip, the focused widget's own) for each key to show, one
        per action, by rank (`_rank`; Textual's order within a rank)."""
        focused = self.screen.focused
        typing = isinstance(focused, Input)
        app = self.app
        seen: set[str] = set()
        out: list[tuple[Binding, bool, str, bool]] = []
        for node, binding, enabled, tooltip in self.screen.active_bindings.values():
            if not binding.show or binding.action in seen:
                continue
            if binding.action == "command_palette":
                continue  # docked on the right, yielded last
            own = node is not app and node is not self.screen
            if typing and not own:
                continue  # the app's letter keys would type into the box
            seen.add(binding.action)
            out.append((binding, enabled, tooltip, own))
        out.sort(key=lambda item: _rank(item[0], item[3]))
        return out

    def _width_of(self, binding: Binding) -> int:
        """Cells a key takes in the footer: ` k ` and `description ` (the palette's key:
        its border, `k`, ` description `: as many, its border over the blank before it)."""
        key = self.app.get_key_display(binding)
        return len(key) + 2 + (len(binding.description) + 1 if binding.description else 0)

    def compose(self) -> ComposeResult:
        """The keys that fit the footer's width, in Textual's order, palette on the right."""
        if not self._bindings_ready:
            return
        shown = self._shown_bindings()
        palette = self._palette_binding()
        typing = isinstance(self.screen.focused, Input)
        items: list[tuple[int, int]] = [
            (_rank(b, own), self._width_of(b)) for b, _enabled, _tip, own in shown
        ]
        if palette is not None and not typing:
            items.append((RANKS["command_palette"], self._width_of(palette[0]) - 1))
        room = self.size.width or self.app.size.width
        self._room = room
        keep = keep_by_rank(items, room)
        for (binding, enabled, tooltip, _own), kept in zip(shown, keep, strict=False):
            if kept:
                yield FooterKey(
                    binding.key,
                    self.app.get_key_display(binding),
                    binding.description,
                    binding.action,
                    disabled=not enabled,
                    tooltip=tooltip,
                ).data_bind(compact=Footer.compact)
        if palette is not None and not typing and keep[-1]:
            binding, enabled = palette
            yield FooterKey(
                binding.key,
                self.app.get_key_display(binding),
                binding.description,
                binding.action,
                classes="-command-palette",
                disabled=not enabled,
                tooltip=binding.tooltip or binding.description,
            )

    def _palette_binding(self) -> tuple[Binding, bool] | None:
        if not (self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE):
            return None
        active = self.screen.active_bindings.get(self.app.COMMAND_PALETTE_BINDING)
        return None if active is None else (active.binding, active.enabled)

    def on_resize(self, event: events.Resize) -> None:
        """A new width may fit more or fewer keys."""
        if self._bindings_ready and event.size.width != self._room:
            self.call_after_refresh(self.recompose)
