"""Readout: a fixed-size piece of text that repaints without a layout pass.

`Static.update` and `Label.update` ask Textual to lay the whole screen out again, which with
a big table costs tens of milliseconds; figures that change several times a second but never
change size use this instead, so an update is only a repaint, and showing what is already
shown costs nothing (no repaint, so no frame).
"""

from __future__ import annotations

import io

from rich.console import Console, RenderableType
from textual.widget import Widget

from sluice.tui.textkey import render_key

__all__ = ["Readout"]


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
        super().__init__(id=id, classes=classes)
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
