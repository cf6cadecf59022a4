"""Readout: a fixed-size piece of text that repaints without a layout pass.

`Static.update` and `Label.update` ask Textual to lay the whole screen out again, which with
a big table costs tens of milliseconds; figures that change several times a second but never
change size use this instead, so an update is only a repaint, and showing what is already
shown costs nothing (no repaint, so no frame). A string given to it is shown as it is, never
read as markup.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.text import Text
from textual.widget import Widget

from sluice.tui.textkey import render_key

__all__ = ["Fitted", "Readout"]


class Readout(Widget):
    """Shows one renderable; give it a fixed height (and width) in CSS."""

    DEFAULT_CSS = """
    Readout {
        height: 1;
    }
    """

    def __init__(
        self,
        content: RenderableType = "",
        *,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes, markup=False)
        self._content: RenderableType = content
        self._key = render_key(content)

    @property
    def content(self) -> RenderableType:
        """What is shown now."""
        return self._content

    @property
    def plain(self) -> str:
        """The content as plain text, at the widget's width (for tests and logs)."""
        out = io.StringIO()
        console = Console(file=out, width=self.size.width or 200, color_system=None)
        console.print(self._content)
        return out.getvalue()

    def update(self, content: RenderableType) -> None:
        """Show `content` (a repaint only: the widget's size does not change; none at all
        when it is what is shown already)."""
        key = render_key(content)
        if key == self._key:
            return
        self._content = content
        self._key = key
        self.refresh()

    def render(self) -> RenderableType:
        """The current content."""
        return self._content


class Fitted:
    """One line made of parts, each with a priority (0 = always kept): at render time the
    parts with the highest numbers go first until the line fits the width it is given, so a
    narrow terminal loses whole figures, never half a number."""

    def __init__(self, parts: Sequence[tuple[int, Text]]) -> None:
        self.parts = list(parts)
        # Equal parts render alike: a Readout then skips the repaint (see `render_key`).
        self._key = tuple((prio, render_key(part)) for prio, part in self.parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fitted) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def fit(self, width: int) -> Text:
        """The line for `width` cells."""
        keep = list(self.parts)
        total = sum(part.cell_len for _, part in keep)
        while total > width:
            worst = max(prio for prio, _ in keep)
            if worst == 0:
                break
            at = max(i for i, (prio, _) in enumerate(keep) if prio == worst)
            total -= keep.pop(at)[1].cell_len
        line = Text(no_wrap=True, overflow="ellipsis")
        for _, part in keep:
            line.append_text(part)
        return line

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """Rich: the fitted line."""
        yield self.fit(options.max_width)
