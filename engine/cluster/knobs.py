"""KnobSync: every live knob the same on every node, stored in Redis.

A change on any node (its app, `PATCH /v1/knobs`, `Engine.set_knobs` in code) is written to
the cluster's knob hash by one script that gives the change a version (a counter in Redis)
and publishes it; every node applies a value only when its version is newer than the one it
holds for that knob, so all nodes end on the newest value whatever order messages arrive in,
and a node's own message (or a change it applied from the cluster) never echoes back. A
node joining (or reconnecting) writes only the knobs the cluster does not hold yet, then
adopts the cluster's values. Changes made while Redis is unreachable apply locally at once
and are written when it is back. Limits of backends a workload added are not config keys
and stay per node.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from sluice.engine.engine import KnobError
from sluice.engine.settings import SETTINGS
from sluice.engine.tasks import cancel_and_wait

if TYPE_CHECKING:
    from sluice.engine.cluster.link import ClusterLink
    from sluice.engine.engine import Engine

__all__ = ["KnobSync"]

log = logging.getLogger("sluice.cluster")


class KnobSync:
    """Keeps `engine`'s live knobs in step with the cluster through `link`."""

    def __init__(self, link: ClusterLink, engine: Engine) -> None:
        self.link = link
        self.engine = engine
        self.versions: dict[str, int] = {}  # knob -> version of the value it holds
        self.seen_version = 0  # the newest version this node has read
        self._pending: dict[str, Any] = {}  # local changes not yet written
        self._applying = False
        self._flush: asyncio.Task[None] | None = None
        self._rereads: set[asyncio.Task[None]] = set()
        self._unsubscribe = engine.on_knob_change(self._on_change)

    async def aclose(self) -> None:
        """Stop listening to the engine; cancel writes and reads under way (and wait)."""
        try:
            self._unsubscribe()
        except ValueError:
            pass
        if self._flush is not None and not self._flush.done():
            await asyncio.wait([self._flush], timeout=1.0)  # a change just made: written
        tasks = [*self._rereads, *([self._flush] if self._flush is not None else [])]
        await cancel_and_wait(tasks)

    @property
    def applying(self) -> bool:
        """True while values from the cluster are being set on the engine."""
        return self._applying

    @staticmethod
    def synced(name: str) -> bool:
        """True for the knobs the cluster shares: every live knob of the registry."""
        setting = SETTINGS.get(name)
        return setting is not None and setting.live

    # -- local changes ---------------------------------------------------------------------

    def _on_change(self, name: str, value: Any) -> None:
        if self._applying or not self.synced(name):
            return
        self._pending[name] = value
        if self._flush is None or self._flush.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # set before the loop runs: written when the link joins
            self._flush = loop.create_task(self._write(), name="sluice-cluster-knobs")

    async def _write(self) -> None:
        await asyncio.sleep(0)  # one write for every knob a set_knobs call changed
        while self._pending and self.link.connected:
            values, self._pending = self._pending, {}
            try:
                version = await self.link.call_knob_script("knob_set", _encode(values))
            except self.link.unreachable_errors as exc:
                self._pending = {**values, **self._pending}
                self.link.lost(exc)
                return
            self._settle(values, int(version))

    def _settle(self, values: dict[str, Any], version: int) -> None:
        """Our write got `version`: it is the newest for these knobs unless a newer one was
        applied meanwhile; if a message with an older one was applied after our local
        change, our value is put back."""
        self.seen_version = max(self.seen_version, version)
        back = {}
        for name, value in values.items():
            if version > self.versions.get(name, 0):
                self.versions[name] = version
                if self.engine.knobs.get(name) != value and name not in self._pending:
                    back[name] = value
        self._apply(back, "this node's newer change")

    # -- the cluster's changes -------------------------------------------------------------

    async def join(self) -> None:
        """On (re)connecting: write the changes made while away, then the knobs the cluster
        lacks (this node's values), then adopt every value the cluster holds."""
        values, self._pending = self._pending, {}
        if values:
            self._settle(values, int(await self.link.call_knob_script("knob_set", _encode(values))))
        mine = {n: v for n, v in self.engine.knobs.items() if self.synced(n)}
        stored, versions = await self.link.call_knob_script("knob_join", _encode(mine))
        self._adopt(_pairs(stored), {k: int(v) for k, v in _pairs(versions).items()}, "cluster")

    def on_message(self, data: str) -> None:
        """A change published by some node (this one included)."""
        try:
            message = json.loads(data)
            version = int(message["version"])
            origin = str(message["origin"])
            values = dict(message["values"])
        except (ValueError, KeyError, TypeError):
            log.warning("cluster: a knob message that does not parse was ignored")
            return
        node = origin.rpartition("/")[0] or origin
        self._adopt(values, dict.fromkeys(values, version), f"node {node}")

    def check_version(self, version: int) -> None:
        """The heartbeat's view of the knob counter: a change this node missed (a message
        lost while its pub/sub reconnected) is read from the hash."""
        if version > self.seen_version and self.link.connected:
            self.seen_version = version
            task = asyncio.get_running_loop().create_task(
                self._reread(), name="sluice-cluster-reread"
            )
            self._rereads.add(task)  # the loop keeps only a weak reference
            task.add_done_callback(self._rereads.discard)

    async def _reread(self) -> None:
        try:
            stored, versions = await self.link.call_knob_script("knob_join", {})
        except self.link.unreachable_errors as exc:
            self.link.lost(exc)
            return
        self._adopt(_pairs(stored), {k: int(v) for k, v in _pairs(versions).items()}, "cluster")

    def _adopt(self, values: dict[str, str], versions: dict[str, int], source: str) -> None:
        newer = {}
        for name, text in values.items():
            version = versions.get(name, 0)
            self.seen_version = max(self.seen_version, version)
            if version <= self.versions.get(name, 0) or name in self._pending:
                continue  # older than ours, or ours is about to be written
            self.versions[name] = version
            try:
                newer[name] = json.loads(text)
            except ValueError:
                continue
        self._apply(
            {n: v for n, v in newer.items() if self.engine.knobs.get(n, _MISSING) != v}, source
        )

    def _apply(self, values: dict[str, Any], source: str) -> None:
        """Set knobs on the local engine without writing them back."""
        if not values:
            return
        before = self.engine.knobs
        changed = []
        self._applying = True
        try:
            for name, value in values.items():  # one by one: a refused value spoils no other
                try:
                    # With a reason: a value from the cluster is no hand on this node, so it
                    # leaves this node's auto-tune switches alone (a hand move elsewhere
                    # arrives with its switch change, which is synced like any knob).
                    self.engine.set_knobs({name: value}, reason=f"from cluster node {source}")
                except KnobError as exc:
                    log.warning("cluster: knob from %s refused: %s", source, exc)
                    continue
                changed.append(f"{name} {before.get(name)} -> {self.engine.knobs[name]}")
        finally:
            self._applying = False
        if changed:
            log.info("knobs from %s: %s", source, ", ".join(changed))


_MISSING = object()


def _encode(values: dict[str, Any]) -> dict[str, str]:
    return {name: json.dumps(value) for name, value in values.items()}


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))
