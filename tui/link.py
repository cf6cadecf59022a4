"""The app's one interface to the engines it shows: `Link`.

The app reads snapshots and acts (set knobs, save, cancel, add demo sessions) only through
a Link, so the same app runs its own engine (`LocalLink`, `sluice` and `sluice monitor`)
or watches served ones over the control API (`RemoteLink`, `sluice attach URL...`).
Actions report back through a callback with one `Outcome` per node: at once for the local
engine, when the answers arrive for served ones, so a slow node never holds the screen.
What a link cannot do says why (`unsupported`), never nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from sluice.engine import settings as S
from sluice.engine.cluster.registry import RegistryStatus
from sluice.engine.config import ConfigChanged, ConfigError, FileStamp
from sluice.engine.config_save import save_config
from sluice.engine.control.client import CONNECTED, ClientError, ControlClient, NodeStatus
from sluice.engine.demo_workload import ContinuousDemo
from sluice.engine.engine import Engine, KnobError
from sluice.engine.histogram import Percentiles
from sluice.engine.session import describe_error
from sluice.engine.settings import SETTINGS, SettingError
from sluice.engine.snapshot import (
    EngineSnapshot,
    ProcessSnapshot,
    SessionDetail,
    SessionSnapshot,
    Totals,
)
from sluice.engine.tasks import cancel_and_wait
from sluice.tui.knobs import KnobDef, unused_reason
from sluice.tui.merge import NodeSession, merge, split_key, with_node
from sluice.tui.source import SnapshotSource

__all__ = [
    "NOT_SERVED",
    "Done",
    "Link",
    "LocalLink",
    "NodeView",
    "Outcome",
    "RemoteLink",
    "Report",
]

Workload = Callable[[Engine], Awaitable[object]]
Report = Callable[[str, str], None]  # (title, message): an error worth a toast
EXPECT_S = 3.0  # how long a sent knob value overrides a node's frames until they show it
NOT_SERVED = "not served"  # a NodeView's state: a cluster node with no control API to attach to


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one action did on one node (`node` is "" for the app's own engine): `ok`, and a
    line saying what happened or why not. `changed_on_disk`: a save refused because the
    config file changed since it was read (the same action with overwrite replaces it)."""

    node: str
    ok: bool
    message: str
    changed_on_disk: bool = False
    saved: Mapping[str, Any] | None = None  # the values a save wrote, when it knows them


Done = Callable[[Sequence[Outcome]], None]


@dataclass(frozen=True, slots=True)
class NodeView:
    """One served engine as the header shows it: its key in this app, how the link
    stands, and its newest snapshot (totals only; None before the first)."""

    key: str
    status: NodeStatus
    snapshot: EngineSnapshot | None

    @property
    def label(self) -> str:
        """The node's name once known, else its URL (credentials hidden)."""
        return self.status.name or self.status.url

    @property
    def live(self) -> bool:
        """Connected, with figures: one of the nodes the merged snapshot is made of."""
        return self.snapshot is not None and self.status.state == CONNECTED


class Link(SnapshotSource, Protocol):
    """The engines the app shows and acts on (a snapshot source with actions)."""

    remote: bool

    @property
    def closed(self) -> bool:
        """True once the link was closed."""
        ...

    async def run(self, report: Report) -> None:
        """The link's lifetime inside the app: start, keep going until cancelled, close."""
        ...

    async def aclose(self) -> None:
        """Close (idempotent, bounded). The app's own engine cancels its sessions; served
        engines keep running untouched."""
        ...

    def nodes(self) -> Sequence[NodeView]:
        """The served engines, in order (none for the app's own engine)."""
        ...

    def registry(self) -> RegistryStatus | None:
        """The cluster registry the nodes were found in (`sluice attach redis://...`), or
        None when the nodes were given by URL (or it is the app's own engine)."""
        ...

    @property
    def target(self) -> str | None:
        """The node knob changes go to (its key), or None for every node."""
        ...

    def next_target(self) -> str | None:
        """Move the knobs' target on: every node, then each node alone, then every node."""
        ...

    def target_label(self) -> str:
        """Where knob changes go, in a few words."""
        ...

    def mixed(self) -> frozenset[str]:
        """Knobs (dotted names) whose values differ among the target's nodes."""
        ...

    def set_knobs(self, values: Mapping[str, Any], done: Done) -> None:
        """Set knobs on the target (all or none per node). KnobError at once when a value
        is not allowed; `done` gets each node's outcome."""
        ...

    def save(self, overwrite: bool, done: Done) -> None:
        """Save the knobs to each engine's own config file."""
        ...

    def cancel(self, key: str, done: Done) -> None:
        """Cancel the session with row key `key` on its engine."""
        ...

    def add_sessions(self, count: int, done: Done) -> None:
        """`count` more demo sessions on the target."""
        ...

    def unsupported(self, action: str) -> str | None:
        """Why `action` ('calibrate') cannot be done here, or None when it can."""
        ...

    def unused_reason(self, knob: KnobDef, snap: EngineSnapshot) -> str | None:
        """Why `knob` reaches none of the sessions, or None (or unknown)."""
        ...


# -- the app's own engine --------------------------------------------------------------------


class LocalLink:
    """The engine in the app's own process (`sluice`, `sluice monitor`): started and closed
    with the app, keeping the config's demo going (`continuous`) and running `workload`.
    `source` replaces the engine's snapshots (tests, screenshots); actions go to `engine`."""

    remote = False
    target = None

    def __init__(
        self,
        engine: Engine,
        config_path: Path,
        *,
        continuous: bool = True,
        workload: Workload | None = None,
        source: SnapshotSource | None = None,
    ) -> None:
        self.engine = engine
        self.config_path = config_path
        self.continuous = continuous
        self.workload = workload
        self.source: SnapshotSource = source if source is not None else engine
        self.demo = ContinuousDemo(engine)
        self._saved: FileStamp | None = None  # the file as this app last wrote it

    @property
    def closed(self) -> bool:
        """True once the engine was closed."""
        return self.engine.closed

    def snapshot(self, *, sessions: bool = True) -> EngineSnapshot:
        """The engine's (or the injected source's) snapshot."""
        return self.source.snapshot(sessions=sessions)

    def detail(self, session_id: str) -> SessionDetail | None:
        """One session in full."""
        return self.source.detail(session_id)

    async def run(self, report: Report) -> None:
        """Start the engine, keep the demo going or run the workload, close at the end."""
        engine = self.engine
        try:
            if not engine.closed:
                engine.start()
                if self.continuous:
                    self.demo.start()
            if self.workload is not None:
                try:
                    await self.workload(engine)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    report("workload failed", describe_error(exc))
            await asyncio.Event().wait()  # lives until the app cancels it
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Cancel every session and close every stream (bounded by the engine's grace)."""
        await self.engine.aclose()

    def nodes(self) -> Sequence[NodeView]:
        """No served engines."""
        return ()

    def registry(self) -> RegistryStatus | None:
        """No registry."""
        return None

    def next_target(self) -> str | None:
        """One engine: it is always the target."""
        return None

    def target_label(self) -> str:
        """One engine, no choice."""
        return ""

    def mixed(self) -> frozenset[str]:
        """One engine never disagrees with itself."""
        return frozenset()

    def set_knobs(self, values: Mapping[str, Any], done: Done) -> None:
        """Applied at once (KnobError, nothing changed, when one is not allowed)."""
        self.engine.set_knobs(values)
        done([Outcome("", True, "")])

    def save(self, overwrite: bool, done: Done) -> None:
        """Write the knobs to the config file, keeping every key they do not cover."""
        config = self.engine.tuned_config()
        if self._saved is not None:
            config = replace(config, source=self._saved)
        try:
            result = save_config(config, self.config_path, overwrite=overwrite)
        except ConfigChanged as exc:
            done([Outcome("", False, str(exc), changed_on_disk=True)])
            return
        except (ConfigError, OSError) as exc:
            done([Outcome("", False, str(exc))])
            return
        self._saved = result.source
        message = f"saved {result.path} ({result.backup_note})"
        done([Outcome("", True, message, saved=config.values)])

    def cancel(self, key: str, done: Done) -> None:
        """Cancel one session of the engine."""
        if self.engine.cancel(key):
            done([Outcome("", True, f"cancelled {key}")])
        else:
            done([Outcome("", False, f"{key} is not running")])

    def add_sessions(self, count: int, done: Done) -> None:
        """While the demo is kept running, its count (the `demo sess.` knob) goes up, so
        the top-up keeps them; otherwise `count` demo sessions run once."""
        if self.engine.closed:
            return
        if not self.demo.running:
            self.engine.add_demo_sessions(count)
            done([Outcome("", True, f"added {count} demo sessions (each runs once)")])
            return
        done([_raise_demo(self.engine.knob(S.DEMO_SESSIONS.name), count, self._set_sessions)])

    def _set_sessions(self, value: int) -> None:
        self.engine.set_knob(S.DEMO_SESSIONS.name, value)

    def unsupported(self, action: str) -> str | None:
        """Everything works on the app's own engine."""
        return None

    def unused_reason(self, knob: KnobDef, snap: EngineSnapshot) -> str | None:
        """Under `sluice monitor` the workload brings its own backends and consumers, so
        any knob but the buffer's may be moot; the demo app's sessions use them all, except
        the delay when the configured consumer is not the sleep one."""
        engine = self.engine
        if self.workload is None:
            if knob.key == "delay_ms" and not engine.delay_applies:
                return "not used: the configured consumer is not the sleep one"
            return None
        return unused_reason(
            knob,
            snap,  # which backends the sessions use
            continuous=self.demo.running,
            delay_applies=engine.delay_applies and (engine.consumer_in_use or self.demo.running),
        )


def _raise_demo(before: int, count: int, apply: Callable[[int], None], node: str = "") -> Outcome:
    """Raise the kept-running demo count by `count` (up to the knob's maximum)."""
    top = S.DEMO_SESSIONS.maximum or before + count
    target = int(min(before + count, top))
    if target == before:
        return Outcome(node, False, f"demo sessions already at the most allowed ({before})")
    try:
        apply(target)
    except KnobError as exc:
        return Outcome(node, False, str(exc))
    return Outcome(node, True, f"demo sessions kept running: {before} -> {target}")


# -- served engines --------------------------------------------------------------------------


class _Node:
    """One served engine: its client, the knob values sent but not yet seen in its
    frames, and the sessions of its newest list marked with the node."""

    def __init__(self, key: str, client: ControlClient) -> None:
        self.key = key
        self.client = client
        self.expected: dict[str, Any] = {}
        self.expected_until = -math.inf
        self.lock = asyncio.Lock()  # one knob change at a time, in the order they were made
        self._marked: tuple[tuple[SessionSnapshot, ...], str, list[NodeSession]] | None = None
        self._rows: dict[str, tuple[SessionSnapshot, NodeSession]] = {}

    @property
    def connected(self) -> bool:
        """True while its event stream flows."""
        return self.client.status.state == CONNECTED

    @property
    def label(self) -> str:
        """The node's name once known, else its URL (credentials hidden)."""
        return self.client.status.name or self.client.shown_url

    def knobs(self, now: float) -> dict[str, Any]:
        """The node's knob values: its newest frame's, with values just sent laid over
        them until a frame shows them (or EXPECT_S passes), so a slider does not jump back
        to the old value while its change is on the way."""
        snap = self.client.snapshot(sessions=False)
        values = dict(snap.knobs) if snap is not None else {}
        if self.expected:
            if now > self.expected_until or all(
                values.get(k) == v for k, v in self.expected.items()
            ):
                self.expected = {}
            else:
                values.update(self.expected)
        return values

    def sessions(self, name: str) -> list[NodeSession]:
        """The newest session list, each marked with this node (a session whose snapshot
        did not change keeps its row object, so the table skips it)."""
        snap = self.client.snapshot()
        raw = snap.sessions if snap is not None else ()
        marked = self._marked
        if marked is not None and marked[0] is raw and marked[1] == name:
            return marked[2]
        rows: dict[str, tuple[SessionSnapshot, NodeSession]] = {}
        out = []
        for s in raw:
            old = self._rows.get(s.id)
            row = old[1] if old is not None and old[0] == s and old[1].node == name else None
            if row is None:
                row = with_node(s, self.key, name)
            rows[s.id] = (s, row)
            out.append(row)
        self._rows = rows
        self._marked = (raw, name, out)
        return out


class RemoteLink:
    """Served engines, one ControlClient each (`sluice attach URL...`). `set_urls` changes
    the list at runtime (a cluster's discovery feeds it). Snapshots are merged
    (tui/merge.py) with `taken_at` on this app's clock; knob changes go to every node or
    to the one `next_target` picked; save goes to every node; cancel to the session's."""

    remote = True

    def __init__(
        self,
        urls: Iterable[str],
        *,
        client: Callable[[str], ControlClient] = ControlClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._make_client = client
        self.clock = clock
        self._nodes: dict[str, _Node] = {}
        self._inputs: dict[str, str] = {}  # node keys by the URL as given
        self._retired: list[ControlClient] = []  # removed by set_urls
        self._keys = (str(n) for n in itertools.count(1))
        self._target: str | None = None
        self._last_knobs: Mapping[str, Any] | None = None  # as the nodes last showed them
        self._running = False
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_at = -math.inf
        self._frame_marks: tuple[int, ...] = ()
        self.set_urls(urls)

    # -- nodes -----------------------------------------------------------------------------

    def set_urls(self, urls: Iterable[str]) -> None:
        """Attach to exactly `urls` (ValueError naming a bad one, and nothing changed): new
        ones are added at the end and followed, ones no longer listed are closed, the
        others keep their link and their place."""
        wanted = list(dict.fromkeys(urls))
        made = [self._make_client(url) for url in wanted if url not in self._inputs]
        keep = set(wanted)
        for url, key in list(self._inputs.items()):
            if url not in keep:
                del self._inputs[url]
                node = self._nodes.pop(key)
                if self._target == key:
                    self._target = None
                self._retired.append(node.client)  # closed now, waited for by aclose
                self._spawn(node.client.aclose())
        known = {n.client.url for n in self._nodes.values()}
        for url, client in zip([u for u in wanted if u not in self._inputs], made, strict=True):
            if client.url in known:  # the same node written another way: attached once
                continue
            key = next(self._keys)
            self._inputs[url] = key
            self._nodes[key] = _Node(key, client)
            known.add(client.url)
            if self._running:
                client.start()

    @property
    def urls(self) -> list[str]:
        """The nodes' URLs, in order (credentials hidden)."""
        return [n.client.shown_url for n in self._nodes.values()]

    def nodes(self) -> Sequence[NodeView]:
        """Every node with its link's state and its newest totals."""
        return [
            NodeView(n.key, n.client.status, n.client.snapshot(sessions=False))
            for n in self._nodes.values()
        ]

    def registry(self) -> RegistryStatus | None:
        """Nodes given by URL: no registry."""
        return None

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:  # no loop yet (set_urls before the app runs)
            coro.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._closed

    async def run(self, report: Report) -> None:
        """Follow every node until the app ends."""
        self._running = True
        try:
            for node in self._nodes.values():
                node.client.start()
            await asyncio.Event().wait()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close every client (the served engines keep running) and finish what is on
        its way (bounded: every request has its timeout)."""
        if self._closed:
            return
        self._closed = True
        await cancel_and_wait(list(self._tasks))
        clients = [*self._retired, *(n.client for n in self._nodes.values())]
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)

    # -- reading ---------------------------------------------------------------------------

    def _targets(self) -> list[_Node]:
        if self._target is not None and self._target in self._nodes:
            return [self._nodes[self._target]]
        return list(self._nodes.values())

    def _stamp(self) -> float:
        """`taken_at` for a merged snapshot: this app's clock when some node last sent a
        frame (unchanged while none did, so an unchanged view is not redrawn)."""
        marks = tuple(n.client.frames for n in self._nodes.values())
        if marks != self._frame_marks:
            self._frame_marks = marks
            self._last_at = max(self.clock(), self._last_at + 1e-6)
        return self._last_at if math.isfinite(self._last_at) else 0.0

    def snapshot(self, *, sessions: bool = True) -> EngineSnapshot:
        """The connected nodes merged; their sessions marked with their nodes; the knobs
        those of the target (its first connected node)."""
        now = self.clock()
        live = [n for n in self._nodes.values() if n.connected]
        snaps = [s for n in live if (s := n.client.snapshot(sessions=False)) is not None]
        if not snaps:
            # Every node down (or none answered yet): no figures, the knobs as last seen
            # (the built-in defaults would read as values, and as unsaved changes).
            return _empty(self._stamp(), self._last_knobs)
        rows: list[SessionSnapshot] = []
        if sessions:
            for node in live:
                rows.extend(node.sessions(node.label))
        targets = [n for n in self._targets() if n.connected] or live
        merged = merge(snaps, rows, targets[0].knobs(now), self._stamp())
        self._last_knobs = merged.knobs
        return merged

    def detail(self, key: str) -> SessionDetail | None:
        """What the snapshot has of one session (the prompt and the text processed stay on
        the node: the control API does not send them)."""
        node_key, session_id = split_key(key)
        node = self._nodes.get(node_key)
        snap = node.client.snapshot() if node is not None else None
        if snap is None:
            return None
        for s in snap.sessions:
            if s.id == session_id:
                return SessionDetail(
                    snapshot=s,
                    prompt="(not sent over the control API)",
                    tail="(the processed text stays on the node: the control API does not send it)",
                    error_detail=s.error,
                    stop_reason=s.stop_reason,
                    model=None,
                )
        return None

    # -- the knobs' target -----------------------------------------------------------------

    @property
    def target(self) -> str | None:
        """The node knob changes go to, or None for every node."""
        return self._target

    def next_target(self) -> str | None:
        """Every node -> the first alone -> the next alone ... -> every node."""
        keys = list(self._nodes)
        if len(keys) < 2:
            self._target = None
        elif self._target is None or self._target not in keys:
            self._target = keys[0]
        else:
            at = keys.index(self._target)
            self._target = keys[at + 1] if at + 1 < len(keys) else None
        return self._target

    def target_label(self) -> str:
        """'all 3 nodes' or the one node's name."""
        if self._target is None or self._target not in self._nodes:
            count = len(self._nodes)
            return "the node" if count == 1 else f"all {count} nodes"
        return NodeView(self._target, self._nodes[self._target].client.status, None).label

    def mixed(self) -> frozenset[str]:
        """Knobs whose values differ among the target's connected nodes."""
        now = self.clock()
        values = [n.knobs(now) for n in self._targets() if n.connected]
        if len(values) < 2:
            return frozenset()
        first = values[0]
        return frozenset(k for k in first if any(v.get(k) != first[k] for v in values[1:]))

    # -- acting ----------------------------------------------------------------------------

    def _gather(
        self, nodes: Sequence[_Node], act: Callable[[_Node], Awaitable[Outcome]], done: Done
    ) -> None:
        """Run `act` on every node at once; `done` with the outcomes in node order."""

        async def one(node: _Node) -> Outcome:
            if not node.connected:
                return Outcome(node.label, False, f"not connected ({node.client.status.error})")
            try:
                return await act(node)
            except ClientError as exc:
                return Outcome(node.label, False, str(exc))

        async def every() -> None:
            done(await asyncio.gather(*(one(n) for n in nodes)))

        self._spawn(every())

    def set_knobs(self, values: Mapping[str, Any], done: Done) -> None:
        """Checked here against the knobs' ranges (KnobError at once), then sent to each
        target node; the values count as the nodes' until their frames show them."""
        checked = {}
        for name, value in values.items():
            setting = SETTINGS.get(name)
            if setting is None or not setting.live:
                raise KnobError(f"{name}: no such knob")
            try:
                checked[name] = setting.coerce(value)
            except SettingError as exc:
                raise KnobError(f"{name} = {value!r}: {exc}") from None
        nodes = [n for n in self._targets() if n.connected]
        if not nodes:
            raise KnobError("not sent: no target node is connected")
        self._gather(nodes, lambda node: self._send(node, checked), done)

    async def _send(self, node: _Node, values: Mapping[str, Any]) -> Outcome:
        """PATCH `values` to one node, after the changes made before (its lock is FIFO);
        until its frames show them, they count as the node's values."""
        node.expected.update(values)
        node.expected_until = self.clock() + EXPECT_S
        try:
            async with node.lock:
                await node.client.set_knobs(values)
        except ClientError:
            for name in values:
                node.expected.pop(name, None)
            raise
        return Outcome(node.label, True, "")

    def save(self, overwrite: bool, done: Done) -> None:
        """Every node saves its knobs to its own config file."""

        async def save(node: _Node) -> Outcome:
            try:
                async with node.lock:  # after the knob changes sent before it
                    answer = await node.client.save(overwrite=overwrite)
            except ClientError as exc:
                changed = exc.status == 409 and "overwrite" in str(exc)
                return Outcome(node.label, False, str(exc), changed_on_disk=changed)
            return Outcome(node.label, True, f"saved {answer.path} ({answer.note})")

        self._gather(list(self._nodes.values()), save, done)

    def cancel(self, key: str, done: Done) -> None:
        """Cancel the session on its node."""
        node_key, session_id = split_key(key)
        node = self._nodes.get(node_key)
        if node is None:
            done([Outcome("", False, "that node is no longer attached")])
            return

        async def cancel(node: _Node) -> Outcome:
            await node.client.cancel(session_id)
            return Outcome(node.label, True, f"cancelled {session_id}")

        self._gather([node], cancel, done)

    def add_sessions(self, count: int, done: Done) -> None:
        """Raise `demo sess.` by `count` on each target node: served engines keep that many
        demo sessions going when they run the demo (`sluice serve --demo`)."""
        now = self.clock()
        name = S.DEMO_SESSIONS.name

        async def add(node: _Node) -> Outcome:
            before = int(node.knobs(now).get(name, 0))
            sent: list[int] = []
            outcome = _raise_demo(before, count, sent.append, node.label)
            if sent:
                await self._send(node, {name: sent[0]})
                outcome = replace(outcome, message=f"{outcome.message} (if it runs the demo)")
            return outcome

        self._gather(self._targets(), add, done)

    def unsupported(self, action: str) -> str | None:
        """Calibration times a consumer in this process: not the served engines'."""
        if action == "calibrate":
            return (
                "calibration times the consumer inside the engine's process; attached to "
                "served engines, run `sluice calibrate` on the node instead"
            )
        return None

    def unused_reason(self, knob: KnobDef, snap: EngineSnapshot) -> str | None:
        """Unknown from outside: every knob stays lit."""
        return None


def _empty(taken_at: float, knobs: Mapping[str, Any] | None) -> EngineSnapshot:
    """A snapshot of nothing: before any node answered, or with every node down; `knobs`
    as last seen (None: the built-in defaults). Its process figures are unknown
    (`merge.has_figures` is false): the header says so instead of showing zeros."""
    empty = Percentiles.empty()
    totals = Totals(0, {}, 0, 0, 0, 0.0, 0.0, 0, 0, 0, 0, 0.0, empty, empty, empty, empty, empty)
    process = ProcessSnapshot(0, 0.0, None, 0, 0.0, None, 0, None)
    if knobs is None:
        knobs = {s.name: s.default for s in S.live_settings()}
    return EngineSnapshot(taken_at, (), (), knobs, process, totals)
