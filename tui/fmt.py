"""Short, fixed-width text for numbers on screen: bytes, seconds, rates, a depth bar.

Every cell in the app goes through these so that a column keeps its width and an unknown
value always reads the same ("-").
"""

from __future__ import annotations

__all__ = ["bar", "count", "knob_value", "nbytes", "pct", "rate", "seconds"]

_BLOCKS = " ▏▎▍▌▋▊▉█"


def nbytes(value: int | None) -> str:
    """1536 -> '1.5K'; None -> '-'."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "K", "M", "G", "T"):
        if abs(size) < 1024 or unit == "T":
            if unit == "B":
                return f"{int(size)}B"
            return f"{size:.1f}{unit}" if size < 10 else f"{size:.0f}{unit}"
        size /= 1024
    return f"{size:.0f}T"


def seconds(value: float | None) -> str:
    """A duration in the unit that keeps it short: '850us', '12ms', '1.4s', '3m05s'."""
    if value is None:
        return "-"
    if value < 0.001:
        return f"{value * 1e6:.0f}us"
    if value < 1:
        return f"{value * 1e3:.0f}ms"
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    return f"{minutes}m{secs:02d}s"


def rate(value: float) -> str:
    """Chunks per second: '0', '7.5', '160', '12k'."""
    if value <= 0:
        return "0"
    if value < 10:
        return f"{value:.1f}"
    if value < 10_000:
        return f"{value:.0f}"
    return f"{value / 1000:.0f}k"


def pct(ratio: float) -> str:
    """0.123 -> '12%'."""
    return f"{ratio * 100:.0f}%"


def count(value: int) -> str:
    """1234 -> '1,234'."""
    return f"{value:,}"


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
