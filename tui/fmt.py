"""Text for the screen: short fixed-width numbers, and outside text made safe to show.

Every cell in the app goes through these, so that a column keeps its width, an unknown value
always reads the same ("-"), and a string from a user, a workload, a backend or a server is
shown as the characters it holds: never read as markup, never sent to the terminal as a
control sequence.
"""

from __future__ import annotations

import unicodedata

from rich.text import Text

__all__ = [
    "bar",
    "clean",
    "count",
    "knob_value",
    "nbytes",
    "pct",
    "plain",
    "rate",
    "seconds",
    "short_int",
]

_BLOCKS = " ▏▎▍▌▋▊▉█"
# Characters that reorder or hide the text around them in a terminal (bidi overrides).
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ESCAPED = frozenset(("Cc", "Cs", "Zl", "Zp"))


def _escape(ch: str) -> str:
    return ch.encode("unicode_escape").decode("ascii")


def clean(text: str, *, one_line: bool = True, limit: int | None = None) -> str:
    """`text` with every control character shown as its escape (ESC as `\\x1b`), bidi
    overrides too; a newline becomes `↵` on one line, a tab a space. At most `limit`
    characters, the last one `…` when cut."""
    if not text.isprintable():
        out: list[str] = []
        for ch in text:
            if ch.isprintable():
                out.append(ch)
            elif ch == "\n":
                out.append("↵" if one_line else "\n")
            elif ch == "\t":
                out.append(" " if one_line else "    ")
            elif ch in _BIDI or unicodedata.category(ch) in _ESCAPED:
                out.append(_escape(ch))
            else:
                out.append(ch)  # spaces, joiners, private use: harmless as they are
        text = "".join(out)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return text


def plain(text: str, style: str = "", *, one_line: bool = True, limit: int | None = None) -> Text:
    """Outside text as a rich Text: no markup read, controls escaped (`clean`); on one line
    it is cut with an ellipsis where its space ends."""
    return Text(
        clean(text, one_line=one_line, limit=limit),
        style=style,
        no_wrap=one_line,
        overflow="ellipsis" if one_line else "fold",
    )


def nbytes(value: int | None) -> str:
    """1536 -> '1.5K'; None -> '-'. At most 5 characters."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "K", "M", "G", "T"):
        if abs(size) < 1000 or unit == "T":
            if unit == "B":
                return f"{int(size)}B"
            return f"{size:.1f}{unit}" if size < 9.95 else f"{size:.0f}{unit}"
        size /= 1024
    return f"{size:.0f}T"


def seconds(value: float | None) -> str:
    """A duration in the unit that keeps it short (at most 6 characters): '850us', '12ms',
    '1.4s', '3m05s', '2h07m', '51h'."""
    if value is None:
        return "-"
    if value < 0.0009995:
        return f"{value * 1e6:.0f}us"
    if value < 0.9995:
        return f"{value * 1e3:.0f}ms"
    if value < 59.95:
        return f"{value:.1f}s"
    if value < 3600:
        minutes, secs = divmod(int(value), 60)
        return f"{minutes}m{secs:02d}s"
    hours, rest = divmod(int(value), 3600)
    if hours < 100:
        return f"{hours}h{rest // 60:02d}m"
    return f"{hours}h"


def rate(value: float) -> str:
    """Chunks per second: '0', '7.5', '160', '12000', '123k' (at most 5 characters)."""
    if value <= 0:
        return "0"
    if value < 9.95:
        return f"{value:.1f}"
    return short_int(round(value), 5)


def pct(ratio: float) -> str:
    """0.123 -> '12%'."""
    return f"{ratio * 100:.0f}%"


def count(value: int) -> str:
    """1234 -> '1,234'."""
    return f"{value:,}"


def short_int(value: int, width: int) -> str:
    """`value` in at most `width` characters (width >= 4): digits while they fit, then
    '123k', '4.5M', '12G'; the number is rounded, never cut."""
    text = str(value)
    if len(text) <= width:
        return text
    size = float(value)
    for unit in ("k", "M", "G", "T", "P"):
        size /= 1000
        for digits in (1, 0):
            short = f"{size:.{digits}f}{unit}"
            if len(short) <= width and (digits == 0 or abs(size) < 9.95):
                return short
    return f"{size:.0e}"


def bar(fill: float, width: int) -> str:
    """A horizontal bar of `width` cells filled to `fill` (0.0-1.0), in eighths."""
    fill = min(max(fill, 0.0), 1.0)
    eighths = round(fill * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full
    if full < width:
        text += _BLOCKS[part] + " " * (width - full - 1)
    return text


def knob_value(value: float, integer: bool) -> str:
    """A knob's exact value: integers plainly, other numbers with up to 4 significant digits."""
    if integer:
        return str(int(value))
    return f"{value:.4g}" if value < 10_000 else f"{value:.0f}"
