"""Fixtures: one real redis-server for the session (tests keep apart by cluster name), and a
private one for tests that stop and restart it. tests/cluster/conftest.py offers them to the
cluster tests; a test elsewhere imports the ones it uses from here."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.bench.redis_server import REDIS_SERVER, RedisServer


def _need_redis() -> None:
    if REDIS_SERVER is None:
        pytest.skip(
            "redis-server is not installed (.ci/run installs it: apt-get install redis-server)"
        )


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server shared by the whole session on a free loopback port."""
    _need_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (it may stop and restart it)."""
    _need_redis()
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster_name() -> str:
    """A cluster name no other test uses (its keys and channels are its own)."""
    return f"t{uuid.uuid4().hex[:10]}"
