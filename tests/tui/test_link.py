"""The app's interface to served engines without the screen: merging nodes' snapshots, and
RemoteLink's node list changed at runtime against real control servers."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import replace

from sluice.engine.config import Config
from sluice.engine.control import serve_control
from sluice.engine.control.client import CONNECTED, ControlClient
from sluice.engine.engine import Engine
from sluice.engine.histogram import Percentiles
from sluice.engine.snapshot import BackendSnapshot, EngineSnapshot, SessionSnapshot
from sluice.tui.link import Outcome, RemoteLink
from sluice.tui.merge import merge, row_key, split_key, with_node
from tests.fakes import other_tasks, wait_until


def _snapshot(rate: float, p99: float, lag: float, ids: tuple[str, ...]) -> EngineSnapshot:
    empty = Percentiles.empty()
    session = SessionSnapshot(
        "x", "demo", "streaming", None, 1, 0.0, 0.1, empty, empty, empty, empty,
        0.0, 0.0, 1, 16, 2, 10, 5, 4, 0, rate, rate, 100, 1.0, 1.0, None, None,
    )  # fmt: skip
    qw = Percentiles(10, 0.01, 0.01, 0.02, p99, p99)
    base = Engine(Config()).snapshot()
    totals = replace(
        base.totals, sessions=len(ids), states={"streaming": len(ids)}, rate_in=rate, queue_wait=qw
    )
    process = replace(base.process, loop_lag=lag, rss=100)
    return EngineSnapshot(
        1.0,
        tuple(replace(session, id=i) for i in ids),
        (BackendSnapshot("demo", 4, 2, 1),),
        base.knobs,
        process,
        totals,
    )


def test_merged_nodes_sum_counts_keep_the_worst_latency_and_key_rows_apart() -> None:
    a = _snapshot(10.0, 0.5, 0.002, ("s1", "s2"))
    b = _snapshot(30.0, 0.9, 0.008, ("s1",))
    rows = [with_node(s, "1", "web-1") for s in a.sessions]
    rows += [with_node(s, "2", "web-2") for s in b.sessions]
    merged = merge([a, b], rows, {"queue.maxsize": 8}, 42.0)
    assert merged.taken_at == 42.0 and merged.knobs["queue.maxsize"] == 8
    assert merged.totals.sessions == 3 and merged.totals.states["streaming"] == 3
    assert merged.totals.rate_in == 40.0
    assert merged.totals.queue_wait.count == 20 and merged.totals.queue_wait.p99 == 0.9
    assert merged.process.loop_lag == 0.008 and merged.process.rss == 200
    assert merged.backends == (BackendSnapshot("demo", 8, 4, 2),)
    keys = [row_key(s) for s in merged.sessions]
    assert len(set(keys)) == 3  # s1 on two nodes is two rows
    assert [split_key(k) for k in keys] == [("1", "s1"), ("1", "s2"), ("2", "s1")]
    assert [getattr(s, "node", None) for s in merged.sessions] == ["web-1", "web-1", "web-2"]
    assert row_key(a.sessions[0]) == "s1"  # the app's own engine: the id itself


async def test_nodes_can_be_added_and_removed_while_the_link_runs() -> None:
    before = other_tasks()
    client = functools.partial(ControlClient, token=None, backoff=(0.05, 0.2))
    async with (
        Engine(Config()) as one,
        Engine(Config()) as two,
        serve_control(one, token=None, node="one") as first,
        serve_control(two, token=None, node="two") as second,
    ):
        link = RemoteLink([first.url], client=client)
        running = asyncio.get_running_loop().create_task(link.run(lambda *_: None))
        await wait_until(lambda: [n.label for n in link.nodes()] == ["one"], 30)
        link.set_urls([first.url, second.url])
        await wait_until(lambda: [n.status.state for n in link.nodes()] == [CONNECTED] * 2, 30)
        assert [n.label for n in link.nodes()] == ["one", "two"]
        link.next_target()  # knobs to "one" only
        assert link.target_label() == "one"
        link.set_urls([second.url])  # "one" goes (and was the target: every node again)
        assert [n.label for n in link.nodes()] == ["two"] and link.target is None
        outcomes: list[Outcome] = []
        link.set_knobs({"queue.maxsize": 5}, outcomes.extend)
        await wait_until(lambda: bool(outcomes), 30)
        assert outcomes == [Outcome("two", True, "")]
        assert two.knob("queue.maxsize") == 5 and one.knob("queue.maxsize") == 16
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    await asyncio.sleep(0)
    assert not (other_tasks() - before)


async def test_closing_right_after_removing_a_node_leaves_nothing_running() -> None:
    made: list[ControlClient] = []

    def client(url: str) -> ControlClient:
        made.append(ControlClient(url, token=None, backoff=(0.05, 0.2)))
        return made[-1]

    async with Engine(Config()) as engine, serve_control(engine, token=None) as server:
        link = RemoteLink([server.url], client=client)
        running = asyncio.get_running_loop().create_task(link.run(lambda *_: None))
        await wait_until(lambda: link.nodes()[0].status.state == CONNECTED, 30)
        link.set_urls([])  # its client's closing is under way...
        running.cancel()  # ... when the app closes the link
        await asyncio.gather(running, return_exceptions=True)
        assert made and all(c.closed for c in made)
