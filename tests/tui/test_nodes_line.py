"""One node's line in `sluice attach`: its memory against its own limit, since the header
sums every node and would hide one near its limit."""

from __future__ import annotations

import io
from dataclasses import replace

from rich.console import Console

from sluice.engine.config import Config
from sluice.engine.control.client import CONNECTED, NodeStatus
from sluice.engine.engine import Engine
from sluice.tui.link import NodeView
from sluice.tui.nodes import node_line

MB = 1024 * 1024


def _line(rss: int, limit: int | None, machine: int) -> tuple[str, list[str]]:
    base = Engine(Config()).snapshot(sessions=False)
    proc = replace(base.process, rss=rss, memory_limit=limit, machine_memory=machine)
    node = NodeView(
        "k", NodeStatus("http://h:1", CONNECTED, 0.0, "web-1"), replace(base, process=proc)
    )
    console = Console(width=200, record=True, color_system=None, file=io.StringIO())
    text = node_line(node, 1.0, target=False).fit(200)
    console.print(text)
    return console.export_text(), [
        str(span.style) for span in text.spans if "RSS" in text.plain[span.start : span.end]
    ]


def test_a_node_near_its_cgroup_limit_says_so_in_red() -> None:
    shown, styles = _line(900 * MB, 1000 * MB, 64_000 * MB)
    assert "RSS 900M 90%" in shown
    assert styles == ["bold red"]


def test_without_a_cgroup_limit_the_machine_is_the_limit() -> None:
    shown, styles = _line(640 * MB, None, 64_000 * MB)
    assert "RSS 640M 1%" in shown
    assert styles == []  # no colour
