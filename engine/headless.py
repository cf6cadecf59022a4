"""Run a plan of sessions on an engine to the end, without the app: what `sluice run` does
between starting the engine and printing the summary.

A plan is a list of (prompt, backend name) pairs (`engine/prompts.plan_sessions` makes one);
each runs once. With `duration` the continuous demo runs instead for that many seconds, then
no new session starts, queued ones are dropped and the streaming ones finish, so nothing
received is lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TextIO

from sluice.engine.demo_workload import ContinuousDemo
from sluice.engine.engine import Engine
from sluice.engine.report import format_seconds
from sluice.engine.snapshot import EngineSnapshot
from sluice.engine.tasks import cancel_and_wait

__all__ = ["run_headless"]


async def run_headless(
    engine: Engine,
    plan: Sequence[tuple[str, str]],
    *,
    duration: float | None = None,
    progress: TextIO | None = None,
) -> tuple[EngineSnapshot, float]:
    """Run `plan` (or the continuous demo for `duration` s) to the end; return the last
    snapshot and the wall time. With `progress`, a one-line status is rewritten there twice
    a second (for a terminal) and erased at the end."""
    started = time.monotonic()
    reporter = (
        asyncio.create_task(_report_progress(engine, started, progress)) if progress else None
    )
    try:
        if duration is not None:
            demo = ContinuousDemo(engine)
            demo.start()
            await asyncio.sleep(duration)
            demo.stop()
            engine.drop_queued()
        else:
            for number, (prompt, backend) in enumerate(plan, start=1):
                engine.add_session(prompt, backend, session_id=f"{backend}-{number:04d}")
        await engine.wait_idle()
    finally:
        if reporter is not None:
            await cancel_and_wait([reporter])
            if progress is not None:
                progress.write("\r\x1b[K")
                progress.flush()
    return engine.snapshot(), time.monotonic() - started


async def _report_progress(engine: Engine, started: float, out: TextIO) -> None:
    while True:
        await asyncio.sleep(0.5)
        t = engine.snapshot().totals
        states = " ".join(f"{n} {s}" for s, n in t.states.items() if n)
        out.write(
            f"\r\x1b[K{format_seconds(time.monotonic() - started)}  {states}  "
            f"chunks {t.tokens_in} in / {t.tokens_out} out  lost {t.tokens_lost}  "
            f"{t.rate_out:.0f}/s"
        )
        out.flush()
