"""`sluice attach redis://...`: the app on every served node of a cluster, found in a real
redis-server's registry. Three real `sluice serve --demo` nodes are found; a fourth started
later appears; one killed with SIGKILL goes once its card expires; a knob moved in the app
reaches every node (and the newcomer adopts it); the shared cap shows as "in use / limit
across N nodes". Redis down at the start is a state, retried, not an error; bad input is
one line and exit 2."""

from __future__ import annotations

import asyncio
import functools
import io
from dataclasses import replace
from pathlib import Path

import pytest

from sluice.bench.redis_server import RedisServer, free_port
from sluice.cli.attach import cluster_to_watch
from sluice.cli.command import CommandIO
from sluice.cli.main import build_parser, run_command
from sluice.engine import Engine
from sluice.engine.cluster import ClusterOptions, viewer_options
from sluice.engine.cluster.registry import NodeInfo, list_nodes
from sluice.engine.config import Config
from sluice.engine.control import serve_control
from sluice.engine.control.client import CONNECTED, DISCONNECTED, ControlClient
from sluice.engine.histogram import Percentiles
from sluice.engine.settings import CLUSTER_NAME
from sluice.engine.snapshot import BackendSnapshot, ClusterSnapshot, SharedCap
from sluice.tui.app import SluiceApp
from sluice.tui.link import NOT_SERVED
from sluice.tui.merge import merge
from sluice.tui.readout import Readout
from sluice.tui.registry_link import SERVE_HINT, RegistryLink
from tests.cluster.fixtures import cluster_name, own_redis, redis_server  # noqa: F401 (fixtures)
from tests.cluster.helpers import node_config
from tests.tui.test_attach import SERVED_TOML, SIZE, Served, _knob_is, _until

from .helpers import screen_text

LEASE_S = 2.0
SHARED_LIMIT = 2

CLUSTER_TOML = (
    SERVED_TOML.replace("demo = 2", f"demo = {SHARED_LIMIT}")
    + """\
[cluster]
redis_url = "{url}"
name = "{name}"
node = "{node}"
shared = ["demo"]
lease_s = {lease}
"""
)


def _link(url: str, name: str) -> RegistryLink:
    client = functools.partial(ControlClient, token=None, backoff=(0.1, 0.5))
    return RegistryLink(
        viewer_options(url, name), client=client, interval_s=0.2, backoff=(0.1, 0.5)
    )


def _attached(link: RegistryLink) -> dict[str, str]:
    """Attached nodes by name: their link's state."""
    return {n.label: n.status.state for n in link.nodes() if n.status.state != NOT_SERVED}


async def test_attach_redis_follows_the_clusters_nodes_as_they_come_and_go(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    cluster_name: str,  # noqa: F811
) -> None:
    nodes = {
        name: Served(
            tmp_path / name,
            CLUSTER_TOML.format(url=redis_server.url, name=cluster_name, node=name, lease=LEASE_S),
        )
        for name in ("n1", "n2", "n3", "n4")
    }
    try:
        await asyncio.gather(*(asyncio.to_thread(nodes[n].start) for n in ("n1", "n2", "n3")))
        link = _link(redis_server.url, cluster_name)
        app = SluiceApp(link=link)
        async with app.run_test(size=SIZE) as pilot:
            three = {"n1": CONNECTED, "n2": CONNECTED, "n3": CONNECTED}
            await _until(pilot, lambda: _attached(link) == three)
            backends = app.query_one("#backends", Readout)
            # The shared cap: one limit for the cluster (not one per node), its use counted
            # across the nodes the registry lists.
            await _until(pilot, lambda: f"/{SHARED_LIMIT} across 3 nodes" in backends.plain)
            assert f"demo {SHARED_LIMIT}/{SHARED_LIMIT}" in backends.plain
            await _until(pilot, lambda: f"cluster {cluster_name}: 3 nodes" in screen_text(app))
            assert "3 live nodes, 3 attached" in screen_text(app)

            # A slider moves: every node gets it.
            app.query_one("#knob-maxsize").focus()
            await pilot.press("right")
            for name in ("n1", "n2", "n3"):
                await _knob_is(pilot, nodes[name], "queue.maxsize", 17)

            # A fourth node joins: attached, with the cluster's knob value.
            await asyncio.to_thread(nodes["n4"].start)
            await _until(pilot, lambda: _attached(link) == {**three, "n4": CONNECTED})
            await _until(pilot, lambda: "across 4 nodes" in backends.plain)
            await _knob_is(pilot, nodes["n4"], "queue.maxsize", 17)

            # One killed: disconnected, then gone once its card expires; the rest go on.
            nodes["n2"].kill()
            await _until(pilot, lambda: _attached(link).get("n2", DISCONNECTED) == DISCONNECTED)
            await _until(pilot, lambda: "n2" not in _attached(link))
            assert _attached(link) == {"n1": CONNECTED, "n3": CONNECTED, "n4": CONNECTED}
            await _until(pilot, lambda: "across 3 nodes" in backends.plain)
            await pilot.press("q")
        assert app.return_code == 0
    finally:
        for node in nodes.values():
            node.kill()


async def test_redis_down_at_the_start_is_a_state_retried_until_it_answers(
    tmp_path: Path,
    cluster_name: str,  # noqa: F811
) -> None:
    port = free_port()
    server = RedisServer(tmp_path, port=port)
    link = _link(server.url, cluster_name)
    app = SluiceApp(link=link)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: "cluster: disconnected since" in screen_text(app))
            text = screen_text(app)
            assert f"registry redis://127.0.0.1:{port}/0 cluster {cluster_name}" in text
            assert "disconnected since" in text and "retrying" in text
            await asyncio.to_thread(server.start)
            # Back: connected, and a cluster with no node yet (a wrong name?) says so.
            await _until(pilot, lambda: "0 live nodes, 0 attached" in screen_text(app))
            assert "--cluster NAME" in screen_text(app)
            await pilot.press("q")
        assert app.return_code == 0
    finally:
        server.stop()


async def test_a_node_without_a_control_api_is_listed_not_attached(
    redis_server: RedisServer,  # noqa: F811
    cluster_name: str,  # noqa: F811
) -> None:

    async with Engine(node_config(redis_server.url, cluster_name, "quiet")) as engine:
        await asyncio.wait_for(engine.cluster.wait_connected(), 10)  # type: ignore[union-attr]
        link = _link(redis_server.url, cluster_name)
        app = SluiceApp(link=link)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: "not attachable" in screen_text(app))
            text = screen_text(app)
            assert "quiet" in text and SERVE_HINT[:40] in text
            assert "1 live node, 0 attached" in text
            await pilot.press("q")


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["redis://127.0.0.1:6379/zero"], "only /DB may follow"),
        (["redis://ops:hunter2@[bad"], "redis://***@[bad"),
        (["redis://127.0.0.1:6379/0", "http://127.0.0.1:8321"], "not both"),
        (["redis://127.0.0.1:6379/0", "--cluster", "a b"], "cluster name 'a b'"),
        (["http://127.0.0.1:8321", "--cluster", "prod"], "--cluster goes with a redis://"),
    ],
)
def test_bad_registry_input_is_one_line_and_exit_2(argv: list[str], shown: str) -> None:
    err = io.StringIO()
    args = build_parser().parse_args(["attach", *argv])
    code = run_command(args, CommandIO(stdout=io.StringIO(), stderr=err, environ={}))
    assert code == 2
    line = err.getvalue()
    assert line.count("\n") == 1 and line.startswith("sluice attach: ")
    assert shown in line and "hunter2" not in line


def _cluster(node: str, *, in_use: int, mine: int, since: float | None = None) -> ClusterSnapshot:
    cap = SharedCap("demo", limit=4, in_use=in_use, waiting=1, node_in_use=mine, node_waiting=1)
    return ClusterSnapshot(
        name="prod",
        node=node,
        redis="redis://***@r:6379/0",
        connected=since is None,
        disconnected_since=since,
        nodes=3,
        lease_s=2.0,
        shared=(cap,),
        grant_latency=Percentiles.empty(),
        error=None if since is None else f"ConnectionError: {node} lost it",
    )


def test_merged_cluster_views_keep_one_cap_sum_the_nodes_parts_and_say_who_is_down() -> None:
    base = Engine(Config()).snapshot()
    snaps = [
        replace(base, backends=(BackendSnapshot("demo", 4, mine, 0),), cluster=c)
        for mine, c in (
            (1, _cluster("a", in_use=3, mine=1)),
            (2, _cluster("b", in_use=2, mine=2, since=200.0)),
            (0, _cluster("c", in_use=3, mine=0, since=100.0)),
        )
    ]
    merged = merge(snaps, [], base.knobs, 1.0)
    assert merged.backends == (BackendSnapshot("demo", 4, 3, 0),)  # one limit, not 12
    cluster = merged.cluster
    assert cluster is not None
    (cap,) = cluster.shared
    assert (cap.limit, cap.in_use) == (4, 3)  # the connected node's answer from Redis
    assert (cap.node_in_use, cap.node_waiting) == (3, 3)  # this view's nodes' parts summed
    assert not cluster.connected and cluster.disconnected_since == 100.0
    assert cluster.error == "ConnectionError: c lost it"
    up = merge(snaps[:1], [], base.knobs, 1.0).cluster
    assert up is not None and up.connected and up.shared == snaps[0].cluster.shared  # type: ignore[union-attr]


def test_a_redis_password_comes_from_the_environment_for_the_same_host_only() -> None:
    def watched(url: str, env: str) -> ClusterOptions | None:
        args = build_parser().parse_args(["attach", url])
        environ = {"SLUICE_REDIS_URL": env}
        return cluster_to_watch(args, Config(), environ)

    same = watched("redis://r.internal:6379/2", "redis://:hunter2@r.internal/0")
    assert same is not None and same.url == "redis://:hunter2@r.internal:6379/2"
    assert "hunter2" not in same.shown_url and "hunter2" not in repr(same)
    other = watched("redis://r.internal:6380/0", "redis://:hunter2@r.internal:6379/0")
    assert other is not None and other.url == "redis://r.internal:6380/0"
    given = watched("redis://me:typed@r.internal:6379/0", "redis://:hunter2@r.internal:6379/0")
    assert given is not None and given.url == "redis://me:typed@r.internal:6379/0"
    assert watched("redis://r:1/0", "").name == Config()[CLUSTER_NAME]  # type: ignore[union-attr]


async def test_a_password_protected_registry_is_read_and_the_password_never_shown(
    tmp_path: Path,
    cluster_name: str,  # noqa: F811
) -> None:
    server = RedisServer(tmp_path, password="hunter2").start()
    try:
        wrong = SluiceApp(link=_link(server.url, cluster_name))  # no password: refused
        async with wrong.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: "AuthenticationError" in screen_text(wrong))
            await pilot.press("q")
        right = SluiceApp(link=_link(server.secret_url, cluster_name))
        async with right.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: "0 live nodes" in screen_text(right))
            text = screen_text(right)
            assert "hunter2" not in text and f"redis://***@127.0.0.1:{server.port}/0" in text
            await pilot.press("q")
    finally:
        server.stop()


async def test_serve_advertise_puts_the_given_url_on_the_nodes_card(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    cluster_name: str,  # noqa: F811
) -> None:
    """Behind NAT or in a container the bound address is not where others reach the node."""
    toml = CLUSTER_TOML.format(url=redis_server.url, name=cluster_name, node="nat", lease=LEASE_S)
    node = Served(tmp_path / "nat", toml)
    try:
        await asyncio.to_thread(node.start, "127.0.0.1:0", "--advertise", "web-9.internal:9999")
        options = viewer_options(redis_server.url, cluster_name)
        for _ in range(200):
            cards = await list_nodes(options)
            if cards and cards[0].url:
                break
            await asyncio.sleep(0.05)
        assert [(c.node, c.url, c.attach_url) for c in cards] == [
            ("nat", "http://web-9.internal:9999", "http://web-9.internal:9999")
        ]
    finally:
        node.kill()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ftp://web-9:1", "--advertise 'ftp://web-9:1': scheme 'ftp' not allowed"),
        ("http://web-9:1/api", "has no path or query"),
        ("http://ops:hunter2@web-9:1", "--advertise 'http://***@web-9:1': no credentials"),
        ("http://web-9:1", "it needs [cluster] redis_url (or SLUICE_REDIS_URL) too"),
    ],
)
def test_a_bad_advertise_is_one_line_and_exit_2(url: str, shown: str) -> None:
    err = io.StringIO()
    args = build_parser().parse_args(["serve", "--demo", "--advertise", url])
    code = run_command(args, CommandIO(stdout=io.StringIO(), stderr=err, environ={}))
    assert code == 2
    line = err.getvalue()
    assert line.count("\n") == 1 and line.startswith("sluice serve: ")
    assert shown in line and "hunter2" not in line


@pytest.mark.parametrize(
    ("url", "host", "expected"),
    [
        ("http://127.0.0.1:8321", "web-3", "http://127.0.0.1:8321"),
        ("http://0.0.0.0:8321", "web-3", "http://web-3:8321"),  # --bind 0.0.0.0:8321
        ("http://[::]:8321", "web-3", "http://web-3:8321"),
        (None, "web-3", None),
        ("http://[bad", "web-3", None),
    ],
)
def test_a_cards_url_is_made_reachable_from_elsewhere(
    url: str | None, host: str, expected: str | None
) -> None:
    info = NodeInfo("n", "n/1", url, 0.0, 0.0, 1, host, (), 2.0)
    assert info.attach_url == expected


async def test_redis_lost_mid_run_keeps_the_attached_nodes_followed_and_is_found_again(
    own_redis: RedisServer,  # noqa: F811
    cluster_name: str,  # noqa: F811
) -> None:
    async with (
        Engine(node_config(own_redis.url, cluster_name, "web-1")) as engine,
        serve_control(engine, token=None, node="web-1") as server,
    ):
        assert engine.cluster is not None
        engine.cluster.advertise(server.url)
        link = _link(own_redis.url, cluster_name)
        app = SluiceApp(link=link)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: _attached(link) == {"web-1": CONNECTED})
            await _until(pilot, lambda: "1 live node, 1 attached" in screen_text(app))
            own_redis.stop()
            await _until(pilot, lambda: "disconnected since" in screen_text(app))
            assert "cluster: disconnected since" in screen_text(app)
            for _ in range(20):  # a while without the registry: the node stays followed
                await pilot.pause(0.05)
                assert _attached(link) == {"web-1": CONNECTED}
            await asyncio.to_thread(own_redis.start)
            await _until(pilot, lambda: "1 live node, 1 attached" in screen_text(app))
            assert _attached(link) == {"web-1": CONNECTED}
            await pilot.press("q")
        assert app.return_code == 0
