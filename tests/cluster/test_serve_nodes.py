"""The issue's "done when": three real `sluice serve` processes share a Claude limit of 4 through
a real redis-server, streaming from the loopback Anthropic server (which counts concurrent
streams). Never more than 4 at once; a knob changed on one node is seen on all; a node
killed with SIGKILL gives its permits back within lease_s + 1 s; Redis stopped and started
again (empty) mid-run over-grants nothing and loses no chunk; every session of the
surviving nodes ends done with its whole answer."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import redis

from sluice.bench.redis_server import RedisServer
from sluice.engine.cluster.keys import Keys
from tests.backends.helpers import TEST_KEY
from tests.backends.servers import AnthropicServer

LEASE_S = 2.0
LIMIT = 4
SESSIONS = 8  # per node
CHUNKS = 40
PACE = 0.05  # seconds between chunks: a stream lasts 2 s, longer than the Redis outage
MODEL = "claude-test-1"

WORKLOAD = """\
import os


async def main(engine):
    node = os.environ["SLUICE_TEST_NODE"]
    for i in range(int(os.environ["SLUICE_TEST_SESSIONS"])):
        engine.add_session(f"{node} prompt {i}", "claude", session_id=f"{node}-{i:03d}")
"""

CONFIG = """\
[limits]
claude = {limit}
[consumer]
kind = "sleep"
delay_ms = 1
[claude]
model = "{model}"
timeout_s = 30
retries = 0
[cluster]
redis_url = "{url}"
name = "{name}"
node = "{node}"
shared = ["claude"]
lease_s = {lease}
"""


def _readline(stream: IO[str], timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


@contextmanager
def serve_node(
    folder: Path, node: str, redis_url: str, cluster: str, anthropic: AnthropicServer
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`sluice serve` as node `node` running the workload; yields it and its URL."""
    folder.mkdir()
    (folder / "workload.py").write_text(WORKLOAD)
    (folder / "config.toml").write_text(
        CONFIG.format(
            limit=LIMIT, model=MODEL, url=redis_url, name=cluster, node=node, lease=LEASE_S
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "ANTHROPIC_"))}
    env.update(
        ANTHROPIC_API_KEY=TEST_KEY,
        ANTHROPIC_BASE_URL=anthropic.url,
        SLUICE_TEST_NODE=node,
        SLUICE_TEST_SESSIONS=str(SESSIONS),
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sluice",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--config",
            str(folder / "config.toml"),
            str(folder / "workload.py") + ":main",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=folder,
    )
    try:
        assert proc.stdout is not None
        url = _readline(proc.stdout, 60).strip()
        if not url.startswith("http://127.0.0.1:"):
            proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"node {node} printed no URL; stderr: {err}")
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def wait_for(check: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {within}s")


def live_nodes(client: redis.Redis, keys: Keys) -> int:
    try:
        return int(client.zcard(keys.nodes))
    except redis.ConnectionError:
        return 0


def holders(client: redis.Redis, keys: Keys) -> list[str]:
    try:
        return list(client.zrange(keys.semaphore("claude").holders, 0, -1))
    except redis.ConnectionError:
        return []


def test_three_serve_nodes_share_a_claude_limit_of_4_through_kill_and_redis_restart(
    tmp_path: Path, own_redis: RedisServer, cluster_name: str
) -> None:
    keys = Keys(cluster_name)
    with (
        AnthropicServer(api_key=TEST_KEY, pace=PACE, chunks=CHUNKS) as anthropic,
        ExitStack() as stack,
        redis.Redis.from_url(own_redis.url, decode_responses=True) as client,
    ):
        anthropic.hold()  # no answer streams until the three nodes are up
        nodes = {
            name: stack.enter_context(
                serve_node(tmp_path / name, name, own_redis.url, cluster_name, anthropic)
            )
            for name in ("n1", "n2", "n3")
        }
        http = {
            name: stack.enter_context(httpx.Client(base_url=url, timeout=30))
            for name, (_, url) in nodes.items()
        }

        def snapshot(name: str) -> dict[str, Any]:
            return http[name].get("/v1/snapshot").json()  # type: ignore[no-any-return]

        # All three registered, with their control URLs.
        def urls() -> list[str]:
            cards = [client.get(keys.node_info(i)) for i in client.zrange(keys.nodes, 0, -1)]
            return sorted(str(json.loads(c)["url"]) for c in cards if c)

        wanted = sorted(url for _, url in nodes.values())
        wait_for(lambda: urls() == wanted, 30, "three nodes registered with their URLs")

        # A knob changed on one node is seen on all.
        assert http["n1"].patch("/v1/knobs", json={"queue.maxsize": 33}).status_code == 200
        for name in ("n2", "n3"):
            wait_for(
                lambda name=name: (
                    http[name].get("/v1/knobs").json()["knobs"]["queue.maxsize"]["value"] == 33
                ),
                1.0,
                f"the knob on {name}",
            )

        # Redis stopped mid-run (its data lost), then back on the same port.
        anthropic.release()
        wait_for(lambda: anthropic.streaming_now == LIMIT, 10, "four streams")
        own_redis.stop()
        time.sleep(0.3)  # shorter than the streams: they are still running when it is back
        own_redis.start()
        wait_for(lambda: live_nodes(client, keys) == 3, 10, "the nodes back in Redis")

        # SIGKILL a node while it holds permits: they come back within lease_s + 1 s.
        assert any(s["state"] == "queued" for n in ("n1", "n2") for s in snapshot(n)["sessions"]), (
            "the run ended too soon; make it longer"
        )
        wait_for(lambda: any(t.startswith("n3/") for t in holders(client, keys)), 30, "n3 holding")
        nodes["n3"][0].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        wait_for(
            lambda: not any(t.startswith("n3/") for t in holders(client, keys)),
            LEASE_S + 3,
            "n3's permits back",
        )
        recovered = time.monotonic() - killed
        assert recovered <= LEASE_S + 1, recovered
        assert nodes["n3"][0].wait(10) == -signal.SIGKILL

        # Every session of the surviving nodes ends done, with its whole answer.
        for name in ("n1", "n2"):
            wait_for(
                lambda name=name: snapshot(name)["totals"]["states"]["done"] == SESSIONS,
                90,
                f"{name}'s sessions done",
            )
            doc = snapshot(name)
            assert doc["cluster"]["state"] == "connected"
            assert doc["totals"]["tokens_lost"] == 0
            for session in doc["sessions"]:
                assert session["state"] == "done", session
                prompt = f"{name} prompt {int(session['id'].rsplit('-', 1)[1])}"
                assert session["tokens_out"] == len(anthropic.words(prompt))
        assert anthropic.streaming_peak[MODEL] == LIMIT  # reached, never passed

        for name in ("n1", "n2"):
            proc = nodes[name][0]
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert "unreachable" in err and "admit nobody new" in err
            assert "Traceback" not in err
            if name == "n2":  # the knob set on n1: logged once, naming where it came from
                assert "knobs from node n1: queue.maxsize 16 -> 33" in err
                assert "in-process" not in err
