"""`--plot FILE`: the scenario's buffer depth and memory over time, one line per mode, as SVG.

Hand-written SVG (polylines, axes, a legend), so the project needs no plotting library.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from xml.sax.saxutils import escape

from sluice.bench.scenario import ScenarioResult

__all__ = ["scenario_svg"]

COLORS = {
    "generation": "#7f7f7f",
    "unbounded": "#d62728",
    "bounded": "#1f77b4",
    "batched": "#2ca02c",
}
WIDTH, PANEL_H, MARGIN_L, MARGIN_R, MARGIN_T, GAP = 760, 190, 80, 20, 50, 60

Row = tuple[float, int, int, int]


def _nice_max(value: float) -> float:
    """A round number at or above `value` for an axis top."""
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _panel(
    lines: Sequence[tuple[str, list[tuple[float, float]]]],
    top: float,
    title: str,
    fmt: Callable[[float], str],
    t_max: float,
) -> list[str]:
    plot_w = WIDTH - MARGIN_L - MARGIN_R
    y_max = _nice_max(max((v for _, points in lines for _, v in points), default=0.0))
    out = [
        f'<text x="{MARGIN_L}" y="{top - 8:.0f}" font-size="13" font-weight="bold">'
        f"{escape(title)}</text>",
        f'<rect x="{MARGIN_L}" y="{top:.0f}" width="{plot_w}" height="{PANEL_H}" '
        'fill="none" stroke="#999"/>',
    ]
    for k in range(6):
        value = y_max * k / 5
        y = top + PANEL_H - PANEL_H * k / 5
        out.append(
            f'<line x1="{MARGIN_L}" y1="{y:.1f}" x2="{MARGIN_L + plot_w}" y2="{y:.1f}" '
            'stroke="#eee"/>'
        )
        out.append(
            f'<text x="{MARGIN_L - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{escape(fmt(value))}</text>"
        )
    for mode, points in lines:
        coords = " ".join(
            f"{MARGIN_L + plot_w * t / t_max:.1f},{top + PANEL_H - PANEL_H * v / y_max:.1f}"
            for t, v in points
        )
        color = COLORS.get(mode, "#000")
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{coords}"/>')
    return out


def scenario_svg(results: Sequence[ScenarioResult], title: str = "") -> str:
    """One SVG document with three panels (chunks buffered, bytes buffered, RSS) over time."""
    if not results:
        raise ValueError("no scenario results to plot")
    t_max = _nice_max(max((row[0] for r in results for row in r.series), default=1.0))
    height = MARGIN_T + 3 * (PANEL_H + GAP) + 10
    body: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{MARGIN_L}" y="20" font-size="15" font-weight="bold">'
        f"{escape(title or 'Sluice bench: the original scenario, per mode')}</text>",
    ]
    x = MARGIN_L
    for r in results:
        color = COLORS.get(r.mode, "#000")
        body.append(
            f'<rect x="{x}" y="28" width="14" height="4" fill="{color}"/>'
            f'<text x="{x + 18}" y="34" font-size="12">{escape(r.mode)}</text>'
        )
        x += 30 + 8 * len(r.mode)
    panels: list[tuple[str, Callable[[ScenarioResult, Row], float], Callable[[float], str]]] = [
        ("chunks buffered, all sessions", lambda r, row: row[1], lambda v: f"{v:g}"),
        ("bytes buffered, all sessions (KiB)", lambda r, row: row[2] / 1024, lambda v: f"{v:g}"),
        (
            "process RSS growth since the mode started (MiB)",
            lambda r, row: max(0, row[3] - r.rss_start) / 2**20,
            lambda v: f"{v:.2f}",
        ),
    ]
    for index, (name, pick, fmt) in enumerate(panels):
        top = MARGIN_T + 20 + index * (PANEL_H + GAP)
        lines = [(r.mode, [(row[0], pick(r, row)) for row in r.series]) for r in results]
        body.extend(_panel(lines, top, name, fmt, t_max))
    plot_w = WIDTH - MARGIN_L - MARGIN_R
    axis_y = MARGIN_T + 20 + 2 * (PANEL_H + GAP) + PANEL_H
    for k in range(6):
        t = t_max * k / 5
        body.append(
            f'<text x="{MARGIN_L + plot_w * k / 5:.1f}" y="{axis_y + 16:.0f}" font-size="11" '
            f'text-anchor="middle">{t:g} s</text>'
        )
    body.append("</svg>")
    return "\n".join(body) + "\n"
