"""The cluster benchmark's workload on each `sluice serve` node: keep `SLUICE_BENCH_INFLIGHT`
Claude sessions in flight (a new one as each ends), so the shared cap always has waiters.

    sluice serve --config node.toml sluice.bench.cluster_workload:main
"""

from __future__ import annotations

import asyncio
import itertools
import os

from sluice.engine.engine import Engine
from sluice.engine.session import Session

__all__ = ["main"]


async def main(engine: Engine) -> None:
    """Start sessions as others end, until the node is stopped."""
    inflight = int(os.environ.get("SLUICE_BENCH_INFLIGHT", "4"))
    wake = asyncio.Event()
    failed: list[Session] = []

    def ended(session: Session) -> None:
        if session.state == "failed":
            failed.append(session)
        wake.set()

    engine.on_session_end(ended)
    numbers = itertools.count()
    while True:
        running = sum(1 for s in engine.sessions.values() if not s.finished)
        for _ in range(inflight - running):
            engine.add_session(f"bench prompt {next(numbers)}", "claude")
        await wake.wait()
        wake.clear()
        if failed:  # an upstream gone away: no hot loop of failing sessions
            failed.clear()
            await asyncio.sleep(0.2)
