"""Long responses: CPU per text delta of one Claude session as the answer grows.

A loopback server (`anthropic_sse`, in its own process) streams an answer of N text deltas in
Anthropic's SSE format; the real `anthropic` client reads it through `ClaudeBackend` and a
Sluice session with the null consumer. Each size runs `rounds` times, interleaved; the figure
is the median CPU time of this process (`time.process_time`) per delta. A per-delta cost that
does not grow with the answer gives a ratio near 1 between the largest and the smallest size;
the SDK's `messages.stream()` helper, which Sluice used before, re-built a snapshot of the
whole answer at every delta (1.4 s of CPU at 20k deltas, 13.5 s at 80k). A 10 ms sleep probe
records how late the event loop ran meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from sluice.bench.measure import child_env, median
from sluice.bench.scale import _lag_probe
from sluice.engine.backends.claude import ClaudeBackend
from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.engine.histogram import Histogram

__all__ = ["LongResult", "run_long"]

WARMUP_DELTAS = 500


@dataclass(frozen=True, slots=True)
class LongResult:
    """Median CPU microseconds per delta (`cpu_us`) and wall seconds per response (`wall_s`)
    for each answer length in `sizes`; `ratio`, CPU per delta at the largest size over that at
    the smallest, is the median of the per-round ratios (the two runs of a round are
    neighbours in time, so the machine's load hits both alike); the loop's lateness."""

    sizes: tuple[int, ...]
    rounds: int
    cpu_us: tuple[float, ...]
    wall_s: tuple[float, ...]
    ratio: float
    lag_p99: float | None
    lag_max: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LongResult:
        """The inverse of `to_dict`."""
        values = dict(data)
        for key in ("sizes", "cpu_us", "wall_s"):
            values[key] = tuple(data[key])
        return cls(**values)


@contextlib.contextmanager
def sse_server() -> Iterator[str]:
    """Start the loopback SSE server in its own process; yield its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice.bench.anthropic_sse"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = proc.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError(f"the SSE server did not start (exit {proc.poll()})")
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _one(engine: Engine, deltas: int) -> tuple[float, float]:
    """Stream one answer of `deltas` deltas through a session: (CPU s, wall s)."""
    cpu, wall = time.process_time(), time.perf_counter()
    session = engine.add_session(str(deltas), "claude")
    await engine.wait_idle()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if session.state != "done" or session.tokens_out != deltas:
        raise RuntimeError(
            f"long response of {deltas} deltas ended {session.state} after "
            f"{session.tokens_out} chunks: {session.error}"
        )
    return cpu, wall


async def run_long(sizes: tuple[int, ...] = (20_000, 80_000), rounds: int = 3) -> LongResult:
    """Time answers of each size `rounds` times, interleaved (the order flips every round)."""
    if len(set(sizes)) < 2 or rounds < 1:
        raise ValueError("run_long needs two different sizes or more and one round or more")
    # The server is on loopback: a proxy from the environment must not be asked.
    os.environ["NO_PROXY"] = ",".join(p for p in (os.environ.get("NO_PROXY"), "127.0.0.1") if p)
    config = Config().with_values({"consumer.kind": "null"})
    cpu: dict[int, list[float]] = {n: [] for n in sizes}
    wall: dict[int, list[float]] = {n: [] for n in sizes}
    lag = Histogram()
    with sse_server() as url:
        backend = ClaudeBackend(
            api_key="bench-not-a-key",
            model="bench-model",
            max_tokens=max(sizes),
            base_url=url,
            retries=0,
        )
        try:
            async with Engine(config, backends={"claude": backend}, history=0) as engine:
                await _one(engine, WARMUP_DELTAS)  # imports, the connection, the caches
                probe = asyncio.create_task(_lag_probe(lag))
                try:
                    for round_number in range(rounds):
                        order = sizes if round_number % 2 == 0 else tuple(reversed(sizes))
                        for n in order:
                            c, w = await _one(engine, n)
                            cpu[n].append(c)
                            wall[n].append(w)
                finally:
                    probe.cancel()
                    await asyncio.gather(probe, return_exceptions=True)
        finally:
            await backend.aclose()
    small, large = min(sizes), max(sizes)
    per_round = [
        (c_large / large) / (c_small / small)
        for c_small, c_large in zip(cpu[small], cpu[large], strict=True)
    ]
    return LongResult(
        sizes=sizes,
        rounds=rounds,
        cpu_us=tuple(median(cpu[n]) / n * 1e6 for n in sizes),
        wall_s=tuple(median(wall[n]) for n in sizes),
        ratio=median(per_round),
        lag_p99=lag.quantile(0.99),
        lag_max=lag.max if lag.count else None,
    )
