"""Helpers of the cluster tests: a node's config, waiting for a condition, counting streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from sluice.engine import Engine
from sluice.engine.config import Config


def node_config(url: str, name: str, node: str, **extra: Any) -> Config:
    """A node sharing the demo backend's cap, with short demo answers."""
    values: dict[str, Any] = {
        "cluster.redis_url": url,
        "cluster.name": name,
        "cluster.node": node,
        "cluster.shared": ["demo"],
        "cluster.lease_s": 2.0,
        "limits.demo": 3,
        "demo.tokens": 15,
        "demo.rate": 150.0,
        "demo.ttft_ms": 5.0,
        "consumer.delay_ms": 1.0,
    }
    values.update(extra)
    return Config().with_values(values)


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until `check()` holds (every 10 ms), or fail."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def streaming(*engines: Engine, backend: str = "demo") -> int:
    return sum(
        1
        for e in engines
        for s in e.sessions.values()
        if s.backend_name == backend and s.state in ("streaming", "draining")
    )
