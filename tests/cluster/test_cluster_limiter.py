"""ClusterLimiter on its own (a ClusterLink without an engine): cancelled waiters leave the
cluster's queue, a node's waiters are served in order, releases are checked, and a resize
reaches Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from sluice.bench.redis_server import RedisServer
from sluice.engine.cluster.keys import Keys
from sluice.engine.cluster.link import ClusterLink
from sluice.engine.cluster.options import ClusterOptions
from tests.cluster.helpers import until


@pytest.fixture
async def links(redis_server: RedisServer, cluster_name: str) -> AsyncIterator[list[ClusterLink]]:
    made = []
    for node in ("a", "b"):
        options = ClusterOptions(redis_server.url, cluster_name, node, ("claude",), 2.0)
        link = ClusterLink(options)
        link.limiter("claude", 1)
        link.start()
        made.append(link)
    for link in made:
        await until(lambda link=link: link.connected)  # type: ignore[misc]
    yield made
    for link in made:
        await link.aclose()


async def queue_size(redis_server: RedisServer, name: str) -> int:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        return int(await client.zcard(Keys(name).semaphore("claude").queue))
    finally:
        await client.aclose()


async def test_a_cancelled_waiter_leaves_the_queue_and_blocks_nobody(
    links: list[ClusterLink], redis_server: RedisServer, cluster_name: str
) -> None:
    a, b = (link.limiters["claude"] for link in links)
    await asyncio.wait_for(a.acquire_on_behalf_of("a1"), 5)
    waiting = asyncio.create_task(b.acquire_on_behalf_of("b1"))
    await until(lambda: b.waiting == 1)
    await asyncio.sleep(0.2)
    assert await queue_size(redis_server, cluster_name) == 1
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert b.waiting == 0
    for _ in range(200):
        if await queue_size(redis_server, cluster_name) == 0:
            break
        await asyncio.sleep(0.01)
    assert await queue_size(redis_server, cluster_name) == 0
    a.release_on_behalf_of("a1")
    await asyncio.wait_for(a.acquire_on_behalf_of("a2"), 5)  # nobody dead ahead of it
    assert (a.in_use, b.in_use) == (1, 0)
    with pytest.raises(RuntimeError):
        a.release_on_behalf_of("a1")  # already given back


async def test_a_nodes_waiters_are_served_in_order(
    links: list[ClusterLink],
) -> None:
    a, b = (link.limiters["claude"] for link in links)
    await asyncio.wait_for(a.acquire_on_behalf_of("a1"), 5)
    first = asyncio.create_task(b.acquire_on_behalf_of("b1"))
    await until(lambda: b.waiting == 1)
    second = asyncio.create_task(b.acquire_on_behalf_of("b2"))
    await until(lambda: b.waiting == 2)
    await asyncio.sleep(0.1)
    a.release_on_behalf_of("a1")
    await until(lambda: first.done())
    assert not second.done()  # b1 asked first
    b.release_on_behalf_of("b1")
    await asyncio.wait_for(second, 5)
    assert b.in_use == 1 and b.cluster_in_use <= 1


async def test_a_resize_reaches_redis_and_lets_waiters_in(
    links: list[ClusterLink], redis_server: RedisServer, cluster_name: str
) -> None:
    a, b = (link.limiters["claude"] for link in links)
    await asyncio.wait_for(a.acquire_on_behalf_of("a1"), 5)
    waiting = asyncio.create_task(b.acquire_on_behalf_of("b1"))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    a.resize(2)  # on the other node: Redis's limit grows, b's waiter is woken
    await asyncio.wait_for(waiting, 5)
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        assert await client.get(Keys(cluster_name).semaphore("claude").limit) == "2"
    finally:
        await client.aclose()


async def test_a_waiter_cancelled_while_its_ticket_is_on_its_way_leaves_no_entry(
    links: list[ClusterLink], redis_server: RedisServer, cluster_name: str
) -> None:
    a, b = (link.limiters["claude"] for link in links)
    await asyncio.wait_for(a.acquire_on_behalf_of("a1"), 5)
    link = links[1]
    original = link.call_acquire
    in_redis = asyncio.Event()
    answer = asyncio.Event()

    async def slow_answer(*args: object, **kwargs: object) -> object:
        result = await original(*args, **kwargs)  # type: ignore[arg-type]
        in_redis.set()
        await answer.wait()  # the reply is "on its way back" while the waiter is cancelled
        return result

    link.call_acquire = slow_answer  # type: ignore[method-assign]
    waiting = asyncio.create_task(b.acquire_on_behalf_of("b1"))
    await asyncio.wait_for(in_redis.wait(), 5)
    assert await queue_size(redis_server, cluster_name) == 1
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    answer.set()
    for _ in range(300):
        if await queue_size(redis_server, cluster_name) == 0:
            break
        await asyncio.sleep(0.01)
    assert await queue_size(redis_server, cluster_name) == 0  # not left to block the queue
