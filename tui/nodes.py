"""The nodes panel of `sluice attach`: one line per served engine under the header.

Each line: connected or not and for how long, the node's name (as its server gives it,
shown as plain text) and its own figures (sessions streaming and queued, chunks/s in and
out, memory against its own limit, CPU, loop lag), or why the link is down. The node that
knob changes go to, when it is one node, is marked. At most MAX_LINES lines; more nodes are
counted on the last. Attached through a cluster's registry (`sluice attach redis://...`), a
first line says how the registry stands, and live nodes that serve no control API are
listed as not attachable.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Group
from rich.text import Text

from sluice.engine.cluster.registry import RegistryStatus
from sluice.engine.control.client import CONNECTED, CONNECTING
from sluice.engine.snapshot import ProcessSnapshot
from sluice.tui import fmt
from sluice.tui.link import NOT_SERVED, NodeView
from sluice.tui.readout import Fitted, Part, Readout

__all__ = ["MAX_LINES", "NodesBar", "node_line", "registry_line"]

MAX_LINES = 4


def _part(text: str, style: str = "") -> Text:
    return Text(text, style=style, end="")


def node_line(node: NodeView, now: float, *, target: bool) -> Fitted:
    """One node's line (parts left out whole on a narrow screen)."""
    status = node.status
    since = fmt.seconds(max(0.0, now - status.since))
    if status.state == CONNECTED:
        mark = _part("● ", "bold green")
        state = _part(f"connected {since} ", "green")
    elif status.state == NOT_SERVED:
        mark = _part("◇ ", "yellow")
        state = _part("not attachable ", "yellow")
    elif status.state == CONNECTING:
        mark = _part("◌ ", "yellow")
        state = _part("connecting ", "yellow")
    else:
        mark = _part("○ ", "bold red")
        state = _part(f"disconnected {since} ", "bold red")
    name = fmt.plain(node.label, "bold", limit=40)
    name.end = ""
    # Figures are named parts: one left out on a narrow screen ends the line with `…`.
    parts: list[tuple[int, Text] | Part] = [(0, mark), (0, name), (1, _part(" ")), (1, state)]
    if target:
        parts.append((0, _part("◆ knobs ", "reverse")))
    snap = node.snapshot
    if status.state != CONNECTED:
        style = "yellow" if status.state == NOT_SERVED else "red"
        why = fmt.plain(status.error or "", style, limit=120)
        why.end = ""
        short = fmt.plain(status.error or "", style, limit=30)  # the gist, when 120 is too long
        short.end = ""
        parts.append(Part(2, why, short=short))
        if status.url and status.url != node.label:
            parts.append(Part(5, _part(f"  {fmt.clean(status.url, limit=60)}", "dim")))
    elif snap is not None:
        totals, proc = snap.totals, snap.process
        states = totals.states
        rates = f" in {fmt.rate(totals.rate_in)}/s out {fmt.rate(totals.rate_out)}/s"
        parts += [
            Part(2, _part(f"{fmt.count(totals.sessions)} sess ")),
            Part(3, _part(f"{states.get('streaming', 0)} streaming ")),
            Part(4, _part(f"{states.get('queued', 0)} queued ")),
            Part(2, _part(rates)),
            Part(3, _memory(proc)),
            Part(3, _part(f"  CPU {proc.cpu_percent:.0f}%")),
            Part(4, _part(f"  lag {fmt.seconds(proc.loop_lag)}")),
            Part(5, _part(f"  {fmt.clean(status.url, limit=60)}", "dim")),
        ]
    return Fitted(parts)


def _memory(proc: ProcessSnapshot) -> Text:
    """`  RSS 310MB 62%`: the node's memory against its own limit (cgroup, else machine), in
    red above 80%: the header sums every node, which would hide one node near its limit."""
    limit = proc.memory_limit or proc.machine_memory
    fill = proc.rss / limit if limit else 0.0
    text = f"  RSS {fmt.nbytes(proc.rss)} {fmt.pct(fill)}"
    return _part(text, "bold red" if fill > 0.8 else "")


def registry_line(registry: RegistryStatus, attached: int) -> Fitted:
    """How the registry stands: connected with its live nodes (how many attached), or
    disconnected since when and why (the nodes attached stay followed meanwhile)."""
    where = fmt.plain(f"registry {registry.redis} cluster {registry.name}", "bold", limit=80)
    where.end = ""
    live = len(registry.nodes)
    since = time.strftime("%H:%M:%S", time.localtime(registry.since))
    if registry.state == CONNECTED:
        parts: list[tuple[int, Text]] = [
            (0, _part("● ", "bold green")),
            (0, where),
            (0, _part(f"  {live} live node{'s' if live != 1 else ''}, {attached} attached")),
        ]
        if not live:
            hint = "  (none yet: is the cluster's name right? --cluster NAME)"
            parts.append((1, _part(hint, "yellow")))
        return Fitted(parts)
    if registry.state == CONNECTING:
        return Fitted(
            [(0, _part("◌ ", "yellow")), (0, where), (0, _part("  connecting", "yellow"))]
        )
    why = fmt.plain(f"  ({registry.error})" if registry.error else "", "red", limit=60)
    why.end = ""
    return Fitted(
        [
            (0, _part("○ ", "bold red")),
            (0, where),
            (0, _part(f"  disconnected since {since}, retrying", "bold red")),
            (1, why),
            (2, _part("  attached nodes still followed", "dim")),
        ]
    )


class NodesBar(Readout):
    """The attached nodes, one line each (its height follows the number of lines); first
    the registry's line when the nodes were found in one."""

    def show(
        self,
        nodes: Sequence[NodeView],
        now: float,
        target: str | None,
        registry: RegistryStatus | None = None,
    ) -> None:
        """Redraw from `nodes` (and `registry`)."""
        lines = [node_line(n, now, target=n.key == target) for n in nodes[:MAX_LINES]]
        if len(nodes) > MAX_LINES:
            rest = nodes[MAX_LINES - 1 :]
            up = sum(1 for n in rest if n.status.state == CONNECTED)
            lines[-1] = Fitted([(0, _part(f"+ {len(rest)} more nodes: {up} up", "dim"))])
        if registry is not None:
            attached = sum(1 for n in nodes if n.status.state != NOT_SERVED)
            lines.insert(0, registry_line(registry, attached))
        height = max(1, len(lines))
        if self.styles.height is None or self.styles.height.value != height:
            self.styles.height = height
        self.update(Group(*lines) if lines else Text("no nodes attached", style="dim"))
