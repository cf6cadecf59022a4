"""Where one cluster lives in Redis: every key and channel under `sluice:{NAME}:`.

The braces are a Redis Cluster hash tag: every key of one cluster hashes to one slot, so
the Lua scripts that touch several of them run there too. Several clusters (different
`[cluster] name`) share one Redis without meeting.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keys", "SemaphoreKeys"]


@dataclass(frozen=True, slots=True)
class SemaphoreKeys:
    """One shared backend's cap: `holders` (ticket -> lease expiry, ms of Redis's clock),
    `queue` (ticket -> arrival number), `seq` (the arrival counter), `limit`."""

    holders: str
    queue: str
    seq: str
    limit: str


@dataclass(frozen=True, slots=True)
class Keys:
    """The keys and channels of the cluster called `name`."""

    name: str

    @property
    def prefix(self) -> str:
        """`sluice:{name}:`, the start of every key and channel."""
        return f"sluice:{{{self.name}}}:"

    @property
    def nodes(self) -> str:
        """Sorted set: node id -> expiry of its heartbeat (ms, Redis's clock)."""
        return self.prefix + "nodes"

    @property
    def node_info_prefix(self) -> str:
        """`<prefix>node:` + node id: the node's JSON card, expiring with its heartbeat."""
        return self.prefix + "node:"

    def node_info(self, node_id: str) -> str:
        """The key of one node's card."""
        return self.node_info_prefix + node_id

    @property
    def epoch(self) -> str:
        """A random id written once per Redis data set: a change means the data was lost."""
        return self.prefix + "epoch"

    @property
    def fence(self) -> str:
        """Present (with a TTL of one lease) while grants wait for nodes to re-assert."""
        return self.prefix + "fence"

    @property
    def knobs(self) -> str:
        """Hash: dotted knob name -> JSON value."""
        return self.prefix + "knobs"

    @property
    def knob_versions(self) -> str:
        """Hash: dotted knob name -> the version that last wrote it."""
        return self.prefix + "knobver"

    @property
    def knob_seq(self) -> str:
        """The knob version counter."""
        return self.prefix + "knobseq"

    @property
    def knob_channel(self) -> str:
        """Pub/sub: every knob change, `{"origin", "version", "values"}`."""
        return self.prefix + "knobs"

    @property
    def autotune_leader(self) -> str:
        """The auto-tune leader's lease: its node id, expiring unless renewed (leader.py)."""
        return self.prefix + "autotune:leader"

    @property
    def autotune_throttles(self) -> str:
        """Claude throttles the nodes that do not lead saw, until the leader takes them."""
        return self.prefix + "autotune:throttles"

    @property
    def wake_prefix(self) -> str:
        """Pub/sub `<prefix>wake:` + node id: "a permit may be yours" (the backend's name)."""
        return self.prefix + "wake:"

    def wake(self, node_id: str) -> str:
        """One node's wake-up channel."""
        return self.wake_prefix + node_id

    def semaphore(self, backend: str) -> SemaphoreKeys:
        """The keys of `backend`'s cluster-wide cap."""
        base = f"{self.prefix}sem:{backend}:"
        return SemaphoreKeys(base + "holders", base + "queue", base + "seq", base + "limit")
