"""AutotuneLeader: in a cluster, one node at a time runs auto-tune's controllers.

Every knob is cluster-wide, the auto switches too, so without a leader each node's
controller would move the one shared value (N times the gain, cuts compounding). The
leader holds a lease in Redis (`<prefix>autotune:leader`, the node id, `SET PX lease`),
renewed with the node's heartbeat by a renew-if-mine script; when the leader dies its lease
expires and the next heartbeat of another node takes it. A node counts as leader only while
connected and within a lease of its last renewal (fail closed: Redis down, nobody moves).

Throttles (claude's 429s, 529s, timeouts) seen by the other nodes reach the leader too:
each heartbeat of a node that does not lead adds its count since the last one to
`<prefix>autotune:throttles` (expiring after a lease, so a count nobody took goes stale
away), and the leader's heartbeat takes and clears it in the same script, so the AIMD cut
reacts to a throttle anywhere in the cluster within a heartbeat.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["LEAD", "RESIGN", "AutotuneLeader"]

# KEYS: leader key, throttle count. ARGV: self id, lease ms, the caller's throttles since
# its last call. Takes the lease when free, renews it when held by the caller; returns
# {holder id, throttles taken}: the leader takes the cluster's count (and its own), another
# node adds its own to the count and takes nothing.
LEAD = r"""
local holder = redis.call('GET', KEYS[1])
local pending = tonumber(ARGV[3])
if not holder or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  local seen = tonumber(redis.call('GET', KEYS[2]) or '0') + pending
  redis.call('DEL', KEYS[2])
  return {ARGV[1], seen}
end
if pending > 0 then
  redis.call('INCRBY', KEYS[2], pending)
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return {holder, 0}
"""

# KEYS: leader key. ARGV: self id. Gives the lease back when the caller holds it.
RESIGN = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


def node_name(node_id: str) -> str:
    """The node's name from its id (`<name>/<hex>`)."""
    return node_id.rsplit("/", 1)[0]


class AutotuneLeader:
    """This node's view of the auto-tune lease; `ClusterLink` drives it."""

    def __init__(
        self, node_id: str, lease_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.node_id = node_id
        self.lease_s = lease_s
        self._clock = clock
        self.holder: str | None = None  # the leader's node id as last read
        self._mine_until = -1.0  # monotonic: our lease surely holds until then
        self.pending = 0  # throttles seen here since the last heartbeat (not leading)
        self.remote = 0  # throttles the cluster reported, not yet taken by the runner

    def report(self, count: int = 1) -> None:
        """A throttle seen by this node's sessions while another node leads."""
        self.pending += count

    def take_remote(self) -> int:
        """The throttles the other nodes reported since the last call (the leader's)."""
        count, self.remote = self.remote, 0
        return count

    async def beat(self, call: Callable[[int], Awaitable[Any]]) -> None:
        """Run the lead script (`call`, given the throttles to report) and record who leads
        and what the cluster reported; a failure leaves no leader (and drops the count)."""
        sent = self._clock()
        pending, self.pending = self.pending, 0
        try:
            holder, taken = await call(pending)
        except BaseException:
            self.lost()
            raise
        self.holder = str(holder)
        self.remote += int(taken)
        if self.holder == self.node_id:
            self._mine_until = sent + self.lease_s * 0.9  # a margin for Redis's clock
        else:
            self._mine_until = -1.0

    def lost(self) -> None:
        """Redis unreachable (or this node leaving): nobody is known to lead."""
        self.holder = None
        self.pending = self.remote = 0
        self._mine_until = -1.0

    @property
    def leading(self) -> bool:
        """True while this node surely holds the lease."""
        return self.holder == self.node_id and self._clock() < self._mine_until

    @property
    def leader(self) -> str | None:
        """The leading node's name, None when none is known."""
        if self.holder is None or (self.holder == self.node_id and not self.leading):
            return None
        return node_name(self.holder)
