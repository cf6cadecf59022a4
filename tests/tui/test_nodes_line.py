"""One node's line in `sluice attach`: its memory against its own limit, since the header
sums every node and would hide one near its limit."""

from __future__ import annotations

import io
from dataclasses import replace

from rich.console import Console

from sluice.engine.config import Config
from sluice.engine.control.client import CONNECTED, DISCONNECTED, NodeStatus
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


def test_a_narrow_screen_leaves_figures_out_with_a_sign_and_keeps_why_a_node_is_down() -> None:
    base = Engine(Config()).snapshot(sessions=False)
    up = NodeView("k", NodeStatus("http://127.0.0.1:8321", CONNECTED, 0.0, "web-1"), base)
    line = node_line(up, 7.9, target=False).fit(80).plain
    assert line.endswith(" …") and len(line) <= 80 and "sess" in line
    error = "ClientConnectorError: Cannot connect to host 127.0.0.1:8321 ssl:default " * 2
    down = NodeView(
        "k", NodeStatus("http://127.0.0.1:8321", DISCONNECTED, 0.0, "web-1", error), None
    )
    line = node_line(down, 12.9, target=False).fit(80).plain
    assert "disconnected" in line and "ClientConnectorError: Cannot" in line and len(line) <= 80
