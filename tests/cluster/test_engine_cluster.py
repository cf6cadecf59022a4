"""Engines in one process as nodes of a cluster on a real redis-server: a shared cap counted
across nodes, knobs applied everywhere (and adopted by a node that joins), the registry, the
snapshot's `cluster` member, failing closed while Redis is down and resuming after, and
credentials in SLUICE_REDIS_URL never shown."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from sluice.bench.redis_server import RedisServer, free_port
from sluice.cli.main import main
from sluice.engine import Engine
from sluice.engine.cluster import ClusterConfigError, viewer_options
from sluice.engine.cluster.keys import Keys
from sluice.engine.cluster.registry import list_nodes
from sluice.engine.report import summary_json
from sluice.engine.snapshot import EngineSnapshot
from tests.cluster.helpers import node_config, streaming, until


async def watch_peak(engines: tuple[Engine, ...], stop: asyncio.Event) -> int:
    peak = 0
    while not stop.is_set():
        peak = max(peak, streaming(*engines))
        await asyncio.sleep(0.002)
    return peak


async def test_two_nodes_share_one_cap_and_every_session_finishes(
    redis_server: RedisServer, cluster_name: str
) -> None:
    a_cfg = node_config(redis_server.url, cluster_name, "a")
    b_cfg = node_config(redis_server.url, cluster_name, "b")
    async with Engine(a_cfg) as a, Engine(b_cfg) as b:
        await until(lambda: a.cluster is not None and a.cluster.connected)
        await until(lambda: b.cluster is not None and b.cluster.connected)
        stop = asyncio.Event()
        peak = asyncio.create_task(watch_peak((a, b), stop))
        a.add_demo_sessions(12)
        b.add_demo_sessions(12)
        await asyncio.wait_for(asyncio.gather(a.wait_idle(), b.wait_idle()), 60)
        stop.set()
        assert await peak <= 3
        for engine in (a, b):
            snap = engine.snapshot()
            assert snap.totals.states["done"] == 12
            assert snap.totals.tokens_lost == 0
            assert snap.totals.tokens_out == snap.totals.tokens_in > 0
        snap = a.snapshot()
        assert snap.cluster is not None
        assert (snap.cluster.name, snap.cluster.node, snap.cluster.connected) == (
            cluster_name,
            "a",
            True,
        )
        assert snap.cluster.state == "connected"
        await until(lambda: a.snapshot().cluster.nodes == 2)  # type: ignore[union-attr]
        (cap,) = snap.cluster.shared
        assert (cap.backend, cap.limit) == ("demo", 3)
        assert snap.cluster.grant_latency.count == 12  # one per session of this node
        # The JSON member, and back.
        doc = json.loads(summary_json(a.snapshot()))
        assert doc["cluster"]["state"] == "connected"
        assert doc["cluster"]["shared"][0]["backend"] == "demo"
        assert "grant_latency_p99" in doc["cluster"]
        assert EngineSnapshot.from_dict(doc).cluster == a.snapshot().cluster.__class__.from_dict(
            doc["cluster"]
        )


async def test_a_knob_changed_on_one_node_reaches_the_others_once(
    redis_server: RedisServer, cluster_name: str
) -> None:
    configs = [node_config(redis_server.url, cluster_name, n) for n in "abc"]
    async with Engine(configs[0]) as a, Engine(configs[1]) as b, Engine(configs[2]) as c:
        for e in (a, b, c):
            await until(lambda e=e: e.cluster is not None and e.cluster.connected)  # type: ignore[misc]
        keys = Keys(cluster_name)
        client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            version = int(await client.get(keys.knob_seq) or 0)
            b.set_knobs({"queue.maxsize": 40, "limits.demo": 5})
            await until(lambda: all(e.knob("queue.maxsize") == 40 for e in (a, b, c)), 1.0)
            await until(lambda: all(e.limiters["demo"].limit == 5 for e in (a, b, c)), 1.0)
            c.set_knob("consumer.delay_ms", 7.5)
            await until(lambda: all(e.knob("consumer.delay_ms") == 7.5 for e in (a, b, c)), 1.0)
            await asyncio.sleep(0.5)  # any echo would have written again by now
            assert int(await client.get(keys.knob_seq)) == version + 2  # two changes, no echo
            stored = await client.hgetall(keys.knobs)
            assert json.loads(stored["queue.maxsize"]) == 40
            assert json.loads(stored["consumer.delay_ms"]) == 7.5
        finally:
            await client.aclose()


async def test_a_move_from_another_node_keeps_auto_tune_on_and_a_hand_move_turns_it_off(
    redis_server: RedisServer, cluster_name: str
) -> None:
    """A value that arrives from the cluster is no person's hand on this node: it must not
    switch this node's auto-tune off (and spread that switch to every node). A hand move on
    any node does take the knob over, everywhere."""
    configs = [node_config(redis_server.url, cluster_name, n) for n in "ab"]
    async with Engine(configs[0]) as a, Engine(configs[1]) as b:
        for e in (a, b):
            await until(lambda e=e: e.cluster is not None and e.cluster.connected)  # type: ignore[misc]
        a.set_knob("autotune.maxsize", True)
        await until(lambda: b.knob("autotune.maxsize") is True, 2.0)
        a.set_knobs({"queue.maxsize": 48}, reason="test: an auto move on node a")
        await until(lambda: b.knob("queue.maxsize") == 48, 2.0)
        await asyncio.sleep(0.3)  # a wrongly switched-off auto would have spread by now
        assert a.knob("autotune.maxsize") is True and b.knob("autotune.maxsize") is True
        b.set_knob("queue.maxsize", 20)  # a person on node b
        await until(lambda: a.knob("queue.maxsize") == 20, 2.0)
        await until(lambda: a.knob("autotune.maxsize") is False, 2.0)
        assert b.knob("autotune.maxsize") is False


async def test_a_joining_node_adopts_the_clusters_values_and_supplies_the_missing_ones(
    redis_server: RedisServer, cluster_name: str
) -> None:
    a_cfg = node_config(redis_server.url, cluster_name, "a", **{"queue.maxsize": 24})
    async with Engine(a_cfg) as a:
        await until(lambda: a.cluster is not None and a.cluster.connected)
        a.set_knob("demo.rate", 99.0)
        await asyncio.sleep(0.2)
        keys = Keys(cluster_name)
        client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            await client.hdel(keys.knobs, "queue.batch_max")  # a knob the cluster lacks
            b_cfg = node_config(
                redis_server.url,
                cluster_name,
                "b",
                **{"queue.maxsize": 8, "demo.rate": 10.0, "queue.batch_max": 7},
            )
            async with Engine(b_cfg) as b:
                await until(lambda: b.cluster is not None and b.cluster.connected)
                assert b.knob("queue.maxsize") == 24  # the cluster's, not its config's
                assert b.knob("demo.rate") == 99.0
                assert b.knob("queue.batch_max") == 7  # its config filled the gap...
                await until(lambda: a.knob("queue.batch_max") == 7, 1.0)  # ...for everyone
            assert json.loads(await client.hget(keys.knobs, "queue.batch_max")) == 7
        finally:
            await client.aclose()


async def test_nodes_register_with_their_url_and_leave_on_close(
    redis_server: RedisServer, cluster_name: str
) -> None:
    options = viewer_options(redis_server.url, cluster_name)  # what attach would use
    async with Engine(node_config(redis_server.url, cluster_name, "web-1")) as a:
        assert a.cluster is not None
        a.cluster.advertise("http://127.0.0.1:8321")
        async with Engine(node_config(redis_server.url, cluster_name, "web-2")) as b:
            assert b.cluster is not None
            await until(lambda: b.cluster is not None and b.cluster.connected)
            await asyncio.sleep(a.cluster.heartbeat_s + 0.2)  # the next card has the URL
            nodes = await list_nodes(options)
            assert [(n.node, n.url) for n in nodes] == [
                ("web-1", "http://127.0.0.1:8321"),
                ("web-2", None),
            ]
            assert all(n.expires > time.time() for n in nodes)
            assert nodes[0].shared == ("demo",) and nodes[0].lease_s == 2.0
        assert [n.node for n in await list_nodes(options)] == ["web-1"]  # b left at once


async def test_redis_down_admits_nobody_new_streaming_ones_finish_and_it_resumes(
    own_redis: RedisServer, cluster_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sluice")
    cfg = node_config(
        own_redis.url,
        cluster_name,
        "a",
        **{"demo.tokens": 60, "demo.rate": 100.0, "limits.demo": 2},
    )
    async with Engine(cfg) as a:
        assert a.cluster is not None
        await until(lambda: a.cluster is not None and a.cluster.connected)
        stop = asyncio.Event()
        peak = asyncio.create_task(watch_peak((a,), stop))
        a.add_demo_sessions(6)
        await until(lambda: streaming(a) == 2)
        own_redis.stop()
        await until(lambda: a.snapshot().cluster.connected is False)  # type: ignore[union-attr]
        snap = a.snapshot()
        assert snap.cluster is not None
        assert snap.cluster.state.startswith("disconnected since ")
        assert json.loads(summary_json(snap))["cluster"]["state"] == snap.cluster.state
        # The two streaming sessions finish; nobody else starts while Redis is away.
        await until(lambda: streaming(a) == 0, 15)
        await asyncio.sleep(0.5)
        states = a.snapshot().totals.states
        assert states["done"] == 2 and states["queued"] == 4
        own_redis.start()  # same port, empty: the data was lost
        await asyncio.wait_for(a.wait_idle(), 60)
        stop.set()
        assert await peak <= 2
        totals = a.snapshot().totals
        assert totals.states["done"] == 6 and totals.tokens_lost == 0
        assert a.snapshot().cluster.connected  # type: ignore[union-attr]
    text = caplog.text
    assert "unreachable" in text and "admit nobody new" in text
    assert "connected to" in text and "after" in text


async def test_an_unreachable_redis_blocks_only_the_shared_backends(cluster_name: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens there
    cfg = node_config(url, cluster_name, "a", **{"cluster.shared": ["claude"]})
    async with Engine(cfg) as a:
        a.add_demo_sessions(3)  # demo is per node here: Redis does not matter to it
        await asyncio.wait_for(a.wait_idle(), 30)
        snap = a.snapshot()
        assert snap.totals.states["done"] == 3
        assert snap.cluster is not None and not snap.cluster.connected
        assert snap.cluster.state.startswith("disconnected since ")


async def test_credentials_in_the_redis_url_are_used_but_never_shown(
    tmp_path: Any,
    cluster_name: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "s3cret-pass-0123"
    server = RedisServer(tmp_path, password=secret).start()
    try:
        monkeypatch.setenv("SLUICE_REDIS_URL", server.secret_url)
        caplog.set_level(logging.DEBUG, logger="sluice")
        cfg = node_config("", cluster_name, "a")
        async with Engine(cfg) as a:
            assert a.cluster is not None
            await until(lambda: a.cluster is not None and a.cluster.connected)
            a.add_demo_sessions(2)
            await asyncio.wait_for(a.wait_idle(), 30)
            server.stop()  # the lines and the state while it is away too
            await until(lambda: a.cluster is not None and not a.cluster.connected)
            snap = a.snapshot()
            shown = summary_json(snap) + repr(snap) + repr(a.cluster.options)
            assert snap.cluster is not None and snap.cluster.redis.startswith("redis://***@")
        assert secret not in shown
        assert "unreachable" in caplog.text and secret not in caplog.text
    finally:
        server.stop()


def test_a_bad_sluice_redis_url_stops_a_command_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLUICE_REDIS_URL", "http://user:hunter2@127.0.0.1:6379")
    code = main(["run", "--headless", "--sessions", "0"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "SLUICE_REDIS_URL=" in err and "hunter2" not in err
    assert "scheme 'http' not allowed" in err


def test_sluice_run_json_carries_the_cluster_member(
    redis_server: RedisServer,
    cluster_name: str,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        "[limits]\ndemo = 2\n[demo]\nsessions = 3\ntokens = 10\nrate = 200\nttft_ms = 5\n"
        "[consumer]\ndelay_ms = 1\n"
        f'[cluster]\nredis_url = "{redis_server.url}"\nname = "{cluster_name}"\n'
        'node = "cli-node"\nshared = ["demo"]\nlease_s = 2\n'
    )
    code = main(["--config", str(config), "run", "--headless", "--json"])
    out, _err = capsys.readouterr()
    assert code == 0
    cluster = json.loads(out)["cluster"]
    assert (cluster["name"], cluster["node"], cluster["state"]) == (
        cluster_name,
        "cli-node",
        "connected",
    )
    assert cluster["shared"][0]["backend"] == "demo" and cluster["shared"][0]["limit"] == 2
    assert cluster["grant_latency_count"] == 3  # one permit per session, from Redis


def test_viewer_options_refuse_a_bad_url_or_name_without_showing_a_password() -> None:
    with pytest.raises(ClusterConfigError) as bad:
        viewer_options("http://u:hunter2@h:6379", "prod")
    assert "hunter2" not in str(bad.value) and "scheme 'http' not allowed" in str(bad.value)
    with pytest.raises(ClusterConfigError, match="cluster name"):
        viewer_options("redis://h:6379/0", "a{b}")


async def test_a_live_shrink_on_one_node_lets_nobody_new_in_until_below_the_new_limit(
    redis_server: RedisServer, cluster_name: str
) -> None:
    extra = {"limits.demo": 4, "demo.tokens": 40, "demo.rate": 100.0}
    a_cfg = node_config(redis_server.url, cluster_name, "a", **extra)
    b_cfg = node_config(redis_server.url, cluster_name, "b", **extra)
    async with Engine(a_cfg) as a, Engine(b_cfg) as b:
        for e in (a, b):
            await until(lambda e=e: e.cluster is not None and e.cluster.connected)  # type: ignore[misc]
        a.add_demo_sessions(6)
        b.add_demo_sessions(6)
        await until(lambda: streaming(a, b) == 4)
        b.set_knob("limits.demo", 1)
        counts = []
        started_after: set[str] = set()
        before = {s.id for e in (a, b) for s in e.sessions.values() if s.state != "queued"}
        while True:
            now = streaming(a, b)
            counts.append(now)
            for e in (a, b):
                started_after |= {
                    f"{e.cluster.node}:{s.id}"  # type: ignore[union-attr]
                    for s in e.sessions.values()
                    if s.state != "queued" and s.id not in before
                }
            if now <= 1 and started_after:
                break
            if counts[-1] > 1:
                # While more than the new limit still stream, nobody new may have started.
                assert not started_after, (counts, started_after)
            await asyncio.sleep(0.005)
        assert a.limiters["demo"].limit == 1  # the shrink reached the other node too
        await asyncio.wait_for(asyncio.gather(a.wait_idle(), b.wait_idle()), 60)
        assert a.snapshot().totals.tokens_lost == 0 and b.snapshot().totals.tokens_lost == 0
