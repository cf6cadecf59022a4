"""A totals-only snapshot (what a display samples often) adds up to the same totals."""

from __future__ import annotations

import asyncio

from sluice.engine.config import Config
from sluice.engine.engine import Engine
from tests.fakes import wait_until


class Clock:
    """Real time until frozen."""

    def __init__(self) -> None:
        self.frozen: float | None = None
        self.loop = asyncio.get_running_loop()

    def __call__(self) -> float:
        return self.loop.time() if self.frozen is None else self.frozen


async def test_a_totals_only_snapshot_has_the_same_totals_and_no_sessions() -> None:
    clock = Clock()
    config = Config().with_values(
        {
            "limits.demo": 3,
            "demo.sessions": 8,
            "demo.tokens": 30,
            "demo.rate": 400.0,
            "demo.ttft_ms": 5.0,
            "demo.seed": 1,
        }
    )
    async with Engine(config, clock=clock) as engine:
        engine.add_demo_sessions(8)
        await wait_until(lambda: any(s.state == "done" for s in engine.sessions.values()))
        clock.frozen = clock.loop.time()
        full = engine.snapshot()
        light = engine.snapshot(sessions=False)
        assert light.sessions == () and len(full.sessions) == 8
        assert light.totals == full.totals
        states = {s.state for s in full.sessions}
        assert "done" in states and states & {"streaming", "queued", "draining"}
        assert full.totals.sessions == 8 and full.totals.tokens_in > 0
        # each session's countable figures are its snapshot's
        for session, snap in zip(engine.sessions.values(), full.sessions, strict=True):
            counts = session.figures(clock())
            assert (counts.tokens_in, counts.rate_in, counts.memory_bytes, counts.depth) == (
                snap.tokens_in,
                snap.rate_in,
                snap.memory_bytes,
                snap.depth,
            )


async def test_a_finished_session_gives_the_same_snapshot_every_time() -> None:
    config = Config().with_values(
        {"demo.sessions": 1, "demo.tokens": 5, "demo.rate": 1000.0, "demo.ttft_ms": 1.0}
        | {"demo.seed": 2}
    )
    async with Engine(config) as engine:
        (session,) = engine.add_demo_sessions(1)
        await engine.wait_idle()
        first = session.snapshot()
        assert first.state == "done" and first.tokens_out == first.tokens_in > 0
        await asyncio.sleep(0.01)
        again = session.snapshot()
        assert again is first  # nothing changes any more: not rebuilt on every refresh
        assert engine.snapshot().sessions[0] is first
