"""The Lua scripts on a real redis-server: grants in arrival order across nodes, never over the
limit (a live shrink included), leases that run out, dead nodes' waiters dropped, targeted
wake-ups, idempotent retries, and the fence after Redis lost its data.

`Node` drives the scripts the way `ClusterLink` does, with a synchronous client, so
hypothesis can run random sequences of acquire / release / resize by several nodes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.bench.redis_server import RedisServer
from sluice.engine.cluster import scripts
from sluice.engine.cluster.keys import Keys

BACKEND = "claude"


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_server.url, decode_responses=True) as c:
        yield c


@dataclass
class Node:
    """One simulated node of cluster `keys` (its heartbeat, tickets and calls)."""

    client: redis.Redis
    keys: Keys
    name: str
    lease_ms: int = 60_000
    epoch: str = ""
    held: list[str] = field(default_factory=list)
    count: int = 0

    @property
    def id(self) -> str:
        return f"{self.name}/0"

    def ticket(self) -> str:
        self.count += 1
        return f"{self.id}|{self.count}"

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return self.client.register_script(getattr(scripts, name))(keys=keys, args=args)

    def heartbeat(self) -> list[Any]:
        sem = self.keys.semaphore(BACKEND)
        answer = self._run(
            "HEARTBEAT",
            [
                self.keys.nodes,
                self.keys.epoch,
                self.keys.fence,
                self.keys.node_info(self.id),
                self.keys.knob_seq,
                sem.holders,
                sem.queue,
                sem.limit,
            ],
            [
                self.id,
                self.lease_ms,
                self.epoch,
                uuid.uuid4().hex,
                '{"node": "x"}',
                self.keys.wake_prefix,
                1,
                BACKEND,
                len(self.held),
                *self.held,
            ],
        )
        self.epoch = answer[0]
        return answer  # type: ignore[no-any-return]

    def acquire(self, *tickets: str, limit: int = 2) -> list[str]:
        sem = self.keys.semaphore(BACKEND)
        answer = self._run(
            "ACQUIRE",
            [
                sem.holders,
                sem.queue,
                sem.seq,
                sem.limit,
                self.keys.nodes,
                self.keys.epoch,
                self.keys.fence,
            ],
            [
                self.id,
                self.lease_ms,
                self.epoch,
                uuid.uuid4().hex,
                limit,
                self.keys.wake_prefix,
                BACKEND,
                *tickets,
            ],
        )
        self.epoch = answer[0]
        granted = list(answer[1])
        self.held += granted
        return granted

    def _sem_call(self, name: str, *args: Any) -> list[int]:
        sem = self.keys.semaphore(BACKEND)
        keys = [sem.holders, sem.queue, sem.limit, self.keys.nodes, self.keys.fence]
        args = (self.id, self.keys.wake_prefix, BACKEND, *args)
        return [int(x) for x in self._run(name, keys, list(args))]

    def release(self, *tickets: str) -> list[int]:
        for ticket in tickets:
            if ticket in self.held:
                self.held.remove(ticket)
        return self._sem_call("RELEASE", *tickets)

    def resize(self, limit: int) -> list[int]:
        return self._sem_call("RESIZE", limit)


def cluster(client: redis.Redis, *names: str, lease_ms: int = 60_000) -> list[Node]:
    keys = Keys(f"t{uuid.uuid4().hex[:10]}")
    nodes = [Node(client, keys, name, lease_ms) for name in names]
    for node in nodes:
        node.heartbeat()
    return nodes


def holders(node: Node) -> set[str]:
    return set(node.client.zrange(node.keys.semaphore(BACKEND).holders, 0, -1))


def test_grants_follow_arrival_order_across_nodes_and_never_pass_the_limit(
    client: redis.Redis,
) -> None:
    a, b = cluster(client, "a", "b")
    a1, a2, a3 = a.ticket(), a.ticket(), a.ticket()
    assert a.acquire(a1, a2, a3) == [a1, a2]  # limit 2: the third waits
    b1 = b.ticket()
    assert b.acquire(b1) == []  # behind a3
    a.release(a1)
    assert b.acquire() == []  # a3 came first: b may not overtake it
    assert a.acquire() == [a3]
    a.release(a2)
    assert b.acquire() == [b1]
    assert holders(a) == {a3, b1}


def test_a_release_wakes_only_the_node_whose_turn_it_is(client: redis.Redis) -> None:
    a, b, c = cluster(client, "a", "b", "c")
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(a.keys.wake(b.id), a.keys.wake(c.id))
    a1 = a.ticket()
    assert a.acquire(a1, limit=1) == [a1]
    b.acquire(b.ticket())
    c.acquire(c.ticket())
    a.release(a1)
    woken = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.2)
        if message is None and woken:
            break
        if message is not None:
            woken.append((message["channel"], message["data"]))
    pubsub.close()
    assert woken == [(a.keys.wake(b.id), BACKEND)]  # b is next; c is not bothered


def test_a_lease_not_renewed_runs_out_and_its_permit_goes_to_the_next(
    client: redis.Redis,
) -> None:
    a, b = cluster(client, "a", "b", lease_ms=300)
    a1 = a.ticket()
    assert a.acquire(a1, limit=1) == [a1]
    b1 = b.ticket()
    assert b.acquire(b1, limit=1) == []
    b.heartbeat()  # b stays alive; a's node and lease are renewed by nobody
    time.sleep(0.2)
    b.heartbeat()
    assert b.acquire() == []  # not yet
    time.sleep(0.2)
    assert b.acquire() == [b1]
    assert holders(a) == {b1}


def test_renewal_keeps_a_lease(client: redis.Redis) -> None:
    (a,) = cluster(client, "a", lease_ms=300)
    a1 = a.ticket()
    assert a.acquire(a1, limit=1) == [a1]
    for _ in range(4):
        time.sleep(0.12)
        a.heartbeat()
    assert holders(a) == {a1}


def test_a_dead_nodes_waiters_are_dropped_when_they_reach_the_head(client: redis.Redis) -> None:
    a, b = cluster(client, "a", "b", lease_ms=300)
    a1 = a.ticket()
    assert a.acquire(a1, limit=1) == [a1]
    b1 = b.ticket()
    b.acquire(b1)  # b waits, then dies (no more heartbeats)
    a2 = a.ticket()
    assert a.acquire(a2) == []
    a.release(a1)
    assert a.acquire() == []  # b1 is first, and b still counts as alive
    time.sleep(0.35)
    a.heartbeat()
    assert a.acquire() == [a2]
    assert b1 not in client.zrange(a.keys.semaphore(BACKEND).queue, 0, -1)


def test_after_a_live_shrink_nothing_is_granted_until_in_use_is_below_the_new_limit(
    client: redis.Redis,
) -> None:
    a, b = cluster(client, "a", "b")
    held = [a.ticket() for _ in range(3)]
    assert a.acquire(*held, limit=3) == held
    b1 = b.ticket()
    assert b.acquire(b1) == []
    a.resize(1)
    for ticket in held[:2]:
        a.release(ticket)
        assert b.acquire() == [], "granted while in use was still at or over the new limit"
    a.release(held[2])
    assert b.acquire() == [b1]
    a.resize(3)  # growing lets the next ones in at once
    b2, b3, b4 = b.ticket(), b.ticket(), b.ticket()
    assert b.acquire(b2, b3, b4) == [b2, b3]


def test_acquire_is_idempotent_when_an_answer_is_lost(client: redis.Redis) -> None:
    (a,) = cluster(client, "a")
    a1 = a.ticket()
    assert a.acquire(a1) == [a1]
    a.held.clear()
    assert a.acquire(a1) == [a1]  # sent again: reported granted, not granted twice
    assert holders(a) == {a1}
    assert client.zcard(a.keys.semaphore(BACKEND).queue) == 0


def test_after_redis_lost_its_data_grants_wait_one_lease_for_holders_to_reassert(
    client: redis.Redis,
) -> None:
    a, b = cluster(client, "a", "b", lease_ms=400)
    a1, a2 = a.ticket(), a.ticket()
    assert a.acquire(a1, a2) == [a1, a2]
    for key in client.scan_iter(f"{a.keys.prefix}*"):  # what a restart without persistence does
        client.delete(key)
    b1 = b.ticket()
    assert b.acquire(b1) == []  # b knew the old epoch: fenced, although holders look empty
    a.heartbeat()  # a re-asserts the two permits it still holds
    assert holders(a) == {a1, a2}
    time.sleep(0.45)
    a.heartbeat()
    b.heartbeat()
    assert b.acquire() == []  # the fence is over, but a's two still fill the limit
    a.release(a1)
    assert b.acquire() == [b1]


def test_a_fresh_cluster_grants_at_once(client: redis.Redis) -> None:
    a = Node(client, Keys(f"t{uuid.uuid4().hex[:10]}"), "a")
    a1 = a.ticket()
    assert a.acquire(a1) == [a1]  # no epoch known yet: no fence on a new cluster


# -- random sequences by several nodes ------------------------------------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "release", "cancel", "resize", "claim"]),
        st.integers(0, 2),  # which node
        st.integers(1, 5),  # tickets, or the new limit
    ),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS, limit=st.integers(1, 4))
def test_random_sequences_never_grant_over_the_limit_nor_out_of_arrival_order(
    client: redis.Redis, ops: list[tuple[str, int, int]], limit: int
) -> None:
    nodes = cluster(client, "a", "b", "c")
    sem = nodes[0].keys.semaphore(BACKEND)
    waiting: list[list[str]] = [[], [], []]
    nodes[0].resize(limit)
    for op, which, n in ops:
        node = nodes[which]
        before = client.zcard(sem.holders)
        seq_before = int(client.get(sem.seq) or 0)
        queued_before = dict(client.zrange(sem.queue, 0, -1, withscores=True))
        if op == "resize":
            node.resize(n)
            limit = n
            continue
        if op == "release" and node.held:
            node.release(*node.held[:n])
            continue
        if op == "cancel" and waiting[which]:
            gone, waiting[which] = waiting[which][:n], waiting[which][n:]
            node.release(*gone)
            continue
        new = [node.ticket() for _ in range(n)] if op == "acquire" else []
        waiting[which] += new
        granted = node.acquire(*new, limit=limit)
        for ticket in granted:
            waiting[which].remove(ticket)
        after = client.zcard(sem.holders)
        if granted:
            # Never over the limit, and never while it was already reached.
            assert after <= limit and before < limit
            # Nobody overtakes: a ticket is granted only when everyone who arrived before it
            # fits under the limit too (their permits are kept for their own nodes).
            arrival = dict(queued_before)
            arrival.update({t: seq_before + 1 + i for i, t in enumerate(new)})
            for ticket in granted:
                ahead = sum(1 for score in arrival.values() if score < arrival[ticket])
                assert ahead < limit - before, (ticket, ahead, limit, before)
        assert after == sum(len(x.held) for x in nodes)
