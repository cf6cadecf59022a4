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
from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.text import Text
from textual.widget import Widget

from sluice.tui.textkey import render_key

__all__ = ["MORE", "Fitted", "Part", "Readout"]


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


@dataclass(frozen=True, slots=True)
class Part:
    """One piece of a `Fitted` line. `prio` 0 is always kept; higher numbers go first.
    `short` is a shorter form used before anything is left out. `named`: a figure the user
    looks for (the README names it), so leaving it out puts MORE at the line's end; an
    unnamed part (a title, a bar drawing what a number beside it says) goes silently."""

    prio: int
    text: Text
    short: Text | None = None
    named: bool = True


MORE = " …"  # ends a line that left out a figure: a wider terminal shows it


class Fitted:
    """One line made of parts, each with a priority (0 = always kept): at render time, until
    the line fits the width it is given, the least important parts take their short form or
    (if unnamed) go, then named ones go too and the line ends with MORE. A narrow terminal
    loses whole figures, never half a number, and never without a sign.

    A `(prio, text)` pair is an unnamed part without a short form."""

    def __init__(self, parts: Sequence[tuple[int, Text] | Part]) -> None:
        self.parts = [
            part if isinstance(part, Part) else Part(part[0], part[1], named=False)
            for part in parts
        ]
        # Equal parts render alike: a Readout then skips the repaint (see `render_key`).
        self._key = tuple(
            (p.prio, render_key(p.text), None if p.short is None else render_key(p.short), p.named)
            for p in self.parts
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fitted) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def fit(self, width: int) -> Text:
        """The line for `width` cells."""
        parts = self.parts
        texts: list[Text | None] = [part.text for part in parts]
        total = sum(part.text.cell_len for part in parts)
        # least important first; of equal ones, the rightmost first
        order = sorted(range(len(parts)), key=lambda i: (-parts[i].prio, -i))
        for i in order:  # 1: short forms, and unnamed parts left out
            if total <= width:
                break
            part, text = parts[i], texts[i]
            if part.short is not None:
                replacement: Text | None = part.short
            elif part.named or part.prio == 0:
                continue
            else:
                replacement = None
            texts[i] = replacement
            total += (replacement.cell_len if replacement else 0) - (text.cell_len if text else 0)
        lost = False
        for i in order:  # 2: named parts left out, with the sign
            if total + (len(MORE) if lost else 0) <= width or parts[i].prio == 0:
                break
            text = texts[i]
            if text is None:
                continue
            texts[i] = None
            total -= text.cell_len
            lost = True
        line = Text(no_wrap=True, overflow="ellipsis")
        for text in texts:
            if text is not None:
                line.append_text(text)
        if lost:
            line.append(MORE, style="bold")
        return line

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """Rich: the fitted line."""
        yield self.fit(options.max_width)
