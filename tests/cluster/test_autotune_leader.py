"""Auto-tune in a cluster: one leader (a lease in Redis) moves each auto knob for every node;
the others watch, hold the leader's value, and take over when it leaves; Redis down, nobody
moves. Signals are fed to the nodes' signal logs directly, as the sessions would report."""

from __future__ import annotations

import asyncio
import re
import time

from sluice.bench.redis_server import RedisServer
from sluice.engine import Engine
from sluice.engine.config import Config
from tests.cluster.helpers import node_config, until

LIMIT = 10


def auto_node(url: str, name: str, node: str) -> Config:
    """A node with the claude limit on auto and short windows (the helpers' 2 s lease)."""
    return node_config(
        url,
        name,
        node,
        **{
            "autotune.claude": True,
            "autotune.window_s": 0.1,
            "limits.claude": LIMIT,
        },
    )


def throttle(engine: Engine) -> None:
    """A 429 from claude as a session of `engine` reports it."""
    engine.signals.add("claude", "429", time.monotonic())


def leader_of(*engines: Engine) -> Engine | None:
    leading = [e for e in engines if e.cluster is not None and e.cluster.leads_autotune]
    assert len(leading) <= 1, "two leaders at once"
    return leading[0] if leading else None


async def settle(*engines: Engine, seconds: float = 0.6) -> None:
    """Let several windows and heartbeats pass while checking there is never two leaders."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        leader_of(*engines)
        await asyncio.sleep(0.02)


async def test_only_the_leader_moves_and_every_node_holds_its_value(
    redis_server: RedisServer, cluster_name: str
) -> None:
    url = redis_server.url
    async with (
        Engine(auto_node(url, cluster_name, "a")) as a,
        Engine(auto_node(url, cluster_name, "b")) as b,
        Engine(auto_node(url, cluster_name, "c")) as c,
    ):
        nodes = (a, b, c)
        await until(lambda: leader_of(*nodes) is not None, 5.0)
        leader = leader_of(*nodes)
        assert leader is not None and leader.cluster is not None
        others = [e for e in nodes if e is not leader]
        # A throttle seen by a node that does not lead reaches the leader: one cut (that
        # node moves nothing itself), which lands on every node; auto stays on everywhere.
        throttle(others[0])
        await until(lambda: all(e.knob("limits.claude") == LIMIT - 1 for e in nodes), 5.0)
        await settle(*nodes)
        assert [e.knob("limits.claude") for e in nodes] == [LIMIT - 1] * 3
        assert all(e.knob("autotune.claude") is True for e in nodes)
        reason = leader.autotune.last_reason("limits.claude")
        assert reason is not None
        assert re.fullmatch(r"-10%: 1 throttle on other nodes at \d\d:\d\d:\d\d", reason)
        # The leader's own throttle, a window later: the next cut, once, everywhere.
        throttle(leader)
        await until(lambda: all(e.knob("limits.claude") == LIMIT - 2 for e in nodes), 5.0)
        await settle(*nodes)
        assert [e.knob("limits.claude") for e in nodes] == [LIMIT - 2] * 3
        name = leader.cluster.node
        for node in nodes:
            snap = node.snapshot()
            assert snap.cluster is not None and snap.cluster.autotune_leader == name
            (auto,) = snap.autotune
            assert auto.led_by == (None if node is leader else name)
        assert all(e.autotune.last_reason("limits.claude") is None for e in others)


async def test_a_closed_leader_hands_over_and_moves_resume_there(
    redis_server: RedisServer, cluster_name: str
) -> None:
    url = redis_server.url
    a = Engine(auto_node(url, cluster_name, "a"))
    b = Engine(auto_node(url, cluster_name, "b"))
    async with a, b:
        await until(lambda: leader_of(a, b) is not None, 5.0)
        first = leader_of(a, b)
        assert first is not None
        second = b if first is a else a
        throttle(first)
        await until(lambda: second.knob("limits.claude") == LIMIT - 1, 5.0)
        await first.__aexit__(None, None, None)
        lease = auto_node(url, cluster_name, "x")["cluster.lease_s"]
        await until(lambda: leader_of(second) is second, lease + 1.0)
        throttle(second)
        await until(lambda: second.knob("limits.claude") == LIMIT - 2, 5.0)
        snap = second.snapshot()
        assert snap.cluster is not None and snap.cluster.autotune_leader == second.cluster.node


async def test_redis_down_nobody_moves_a_shared_auto_knob(
    own_redis: RedisServer, cluster_name: str
) -> None:
    url = own_redis.url
    async with (
        Engine(auto_node(url, cluster_name, "a")) as a,
        Engine(auto_node(url, cluster_name, "b")) as b,
    ):
        await until(lambda: leader_of(a, b) is not None, 5.0)
        own_redis.stop()
        await until(lambda: leader_of(a, b) is None, 3.0)
        for node in (a, b):
            throttle(node)
        await settle(a, b)
        assert [a.knob("limits.claude"), b.knob("limits.claude")] == [LIMIT, LIMIT]
        for node in (a, b):
            snap = node.snapshot()
            assert snap.cluster is not None and snap.cluster.autotune_leader is None
            (auto,) = snap.autotune
            assert auto.led_by is None


async def test_a_leader_that_stops_beating_steps_down_before_another_takes_over(
    redis_server: RedisServer, cluster_name: str
) -> None:
    url = redis_server.url
    async with (
        Engine(auto_node(url, cluster_name, "a")) as a,
        Engine(auto_node(url, cluster_name, "b")) as b,
    ):
        await until(lambda: leader_of(a, b) is not None, 5.0)
        first = leader_of(a, b)
        assert first is not None and first.cluster is not None
        second = b if first is a else a
        # As a process that stalls: no heartbeat, no resign; its lease runs out in Redis,
        # and it stops counting itself leader before that (`leader_of` checks: never two).
        task = first.cluster._task
        assert task is not None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        lease = auto_node(url, cluster_name, "x")["cluster.lease_s"]
        deadline = time.monotonic() + lease + 1.0
        while leader_of(a, b) is not second:
            assert time.monotonic() < deadline, "no takeover within lease_s + 1 s"
            await asyncio.sleep(0.01)
        throttle(second)
        throttle(first)  # the stalled node's own signals move nothing
        await until(lambda: second.knob("limits.claude") == LIMIT - 1, 5.0)
        await settle(a, b, seconds=0.3)
        assert first.knob("limits.claude") == LIMIT  # cut off from the cluster: not told


async def test_the_leader_grows_a_shared_cap_that_other_nodes_fill(
    redis_server: RedisServer, cluster_name: str
) -> None:
    """The window is at the cap when the cluster's permits are all in use, whichever nodes
    hold them: the leader holds none here, and still grows the limit by one."""
    extra = {"cluster.shared": ["claude"], "limits.claude": 2, "autotune.claude_max": 3}
    url = redis_server.url
    a_cfg = auto_node(url, cluster_name, "a").with_values(extra)
    b_cfg = auto_node(url, cluster_name, "b").with_values(extra)
    async with Engine(a_cfg) as a, Engine(b_cfg) as b:
        await until(lambda: leader_of(a, b) is not None, 5.0)
        leader = leader_of(a, b)
        other = b if leader is a else a
        assert leader is not None
        limiter = other.limiters["claude"]
        for holder in ("x1", "x2"):
            await asyncio.wait_for(limiter.acquire_on_behalf_of(holder), 5.0)
        await until(lambda: all(e.knob("limits.claude") == 3 for e in (a, b)), 5.0)
        assert leader.limiters["claude"].in_use == 0
        reason = leader.autotune.last_reason("limits.claude")
        assert reason == "+1: limit reached, no errors"
        for holder in ("x1", "x2"):
            limiter.release_on_behalf_of(holder)
