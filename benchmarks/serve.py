"""Serve: what watching a served engine costs it, and what a Prometheus scrape costs.

N demo sessions (null consumer, as in the scale part) run under the control API. Windows
with no viewer alternate, round by round, with windows where one SSE viewer in another
process reads `/v1/events` (parsing every frame) at each viewer setting; each window counts
the chunks the engine delivered and how late a 10 ms sleep woke (the loop lag). The ratio
is the median over rounds of (chunks/s with the viewer) / (chunks/s without) from
neighbouring windows, so the machine's load hits both alike. Then `/metrics` is scraped
`scrapes` times from another process (wall time per scrape as Prometheus sees it), and one
frame is timed in this process: the loop-side snapshot and the thread-side encoding.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from sluice.bench.measure import child_env, cpu_seconds, machine_busy_seconds, median
from sluice.bench.scale import _lag_probe, scale_config
from sluice.engine.control import ControlServer
from sluice.engine.control.metrics import MetricsRenderer
from sluice.engine.control.wire import knobs_document, render_snapshot
from sluice.engine.engine import Engine
from sluice.engine.histogram import Histogram

__all__ = ["VIEWERS", "ServeResult", "ViewerFigures", "run_serve"]

# (label, frames per second, frames per second carrying the session list); None: no viewer
VIEWERS: tuple[tuple[str, float | None, float | None], ...] = (
    ("none", None, None),
    ("SSE 5 Hz", 5.0, 5.0),
    ("SSE 5 Hz, sessions 1 Hz", 5.0, 1.0),
    ("SSE 20 Hz", 20.0, 20.0),
)


@dataclass(frozen=True, slots=True)
class ViewerFigures:
    """One viewer setting: medians over rounds of chunks/s delivered, its ratio to the
    neighbouring no-viewer window, loop lag p99 and max (10 ms probe), the served process's
    CPU, every other process's CPU (the viewer's included: the competition for the cores),
    and the frames the viewer received per second."""

    label: str
    rate: float | None
    sessions_rate: float | None
    delivered_cps: float
    ratio: float
    lag_p99: float | None
    lag_max: float | None
    cpu_percent: float
    others_cpu_percent: float
    frames_per_s: float


@dataclass(frozen=True, slots=True)
class ServeResult:
    """Everything the serve part measured (times in seconds, sizes in bytes)."""

    sessions: int
    rate: float
    window_s: float
    rounds: int
    nominal_cps: float
    viewers: tuple[ViewerFigures, ...]
    scrape_p50: float
    scrape_max: float
    scrape_bytes: int
    render_metrics_s: float
    snapshot_s: float
    encode_full_s: float
    encode_light_s: float
    frame_full_bytes: int
    frame_light_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["viewers"] = [asdict(v) for v in self.viewers]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServeResult:
        """The inverse of `to_dict`."""
        values = dict(data)
        values["viewers"] = tuple(ViewerFigures(**v) for v in data["viewers"])
        return cls(**values)


def _client(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sluice.bench.serve_client", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )


async def _readline(proc: subprocess.Popen[str], limit_s: float = 60.0) -> str:
    """The client's next line; it is killed if none comes within `limit_s`."""
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), limit_s)
    except TimeoutError:
        proc.kill()
        raise RuntimeError(f"the serve client said nothing for {limit_s:g}s") from None
    if not line:
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"the serve client ended early: {err.strip()[-300:]}")
    return line


async def _window(engine: Engine, window: float) -> tuple[float, Histogram, float, float, float]:
    """(chunks/s delivered, the lag probe's histogram, this process's CPU percent, the other
    processes' CPU percent, seconds) over a window."""
    lag = Histogram()
    probe = asyncio.create_task(_lag_probe(lag))
    out_before = sum(s.tokens_out for s in engine.sessions.values())
    cpu_before = cpu_seconds()
    busy_before = machine_busy_seconds()
    started = time.monotonic()
    await asyncio.sleep(window)
    elapsed = time.monotonic() - started
    probe.cancel()
    await asyncio.gather(probe, return_exceptions=True)
    out = sum(s.tokens_out for s in engine.sessions.values()) - out_before
    cpu = cpu_seconds() - cpu_before
    others = max(0.0, machine_busy_seconds() - busy_before - cpu)
    return out / elapsed, lag, 100.0 * cpu / elapsed, 100.0 * others / elapsed, elapsed


async def _timed(fn: Any, repeat: int = 5) -> float:
    """The median wall time of `fn()` (a plain call) over `repeat` runs, with a breath of
    loop time between them."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
        await asyncio.sleep(0.05)
    return median(times)


async def run_serve(
    sessions: int = 1000,
    *,
    rate: float = 20.0,
    window: float = 3.0,
    rounds: int = 3,
    warmup: float = 2.0,
    scrapes: int = 20,
) -> ServeResult:
    """Serve N demo sessions; measure each viewer setting against none, then the scrape."""
    tokens = max(10, math.ceil(rate * (warmup + rounds * len(VIEWERS) * (window + 2)) * 2))
    config = scale_config(sessions, rate, tokens, batch_max=16)
    samples: dict[str, list[tuple[float, float | None, float | None, float, float, float]]] = {
        label: [] for label, _, _ in VIEWERS
    }
    ratios: dict[str, list[float]] = {label: [] for label, _, _ in VIEWERS}
    async with Engine(config, history=None) as engine:
        async with ControlServer(engine, bind="127.0.0.1:0", token=None) as server:
            engine.add_demo_sessions(sessions)
            await asyncio.sleep(warmup)
            for round_number in range(rounds):
                shift = round_number % len(VIEWERS)
                order = VIEWERS[shift:] + VIEWERS[:shift]
                baseline: float | None = None
                pending: list[tuple[str, float]] = []
                for label, viewer_rate, sessions_rate in order:
                    viewer = None
                    if viewer_rate is not None:
                        viewer = _client("sse", server.url, str(viewer_rate), str(sessions_rate))
                        await _readline(viewer)  # `ready`: its first frame arrived
                    cps, lag, cpu, others, elapsed = await _window(engine, window)
                    frames = 0.0
                    if viewer is not None:
                        viewer.terminate()
                        frames = json.loads(await _readline(viewer))["frames"] / elapsed
                        await asyncio.to_thread(viewer.wait)
                    lag_max = lag.max if lag.count else None
                    samples[label].append((cps, lag.quantile(0.99), lag_max, cpu, others, frames))
                    if viewer_rate is None:
                        baseline = cps
                    else:
                        pending.append((label, cps))
                assert baseline is not None
                for label, cps in pending:
                    ratios[label].append(cps / baseline)
                ratios["none"].append(1.0)
            scraper = _client("scrape", server.url, str(scrapes))
            scraped = json.loads(await _readline(scraper, 300))
            await asyncio.to_thread(scraper.wait)
            renderer = MetricsRenderer(engine, server.node)
            render_metrics_s = await _timed(renderer.render)
            snapshot_s = await _timed(engine.snapshot)
            snap = engine.snapshot()
            knobs = knobs_document(engine)
            full = render_snapshot(snap, knobs, server.node, True)
            light = render_snapshot(snap, knobs, server.node, False)
            encode_full_s = await _timed(lambda: render_snapshot(snap, knobs, server.node, True))
            encode_light_s = await _timed(lambda: render_snapshot(snap, knobs, server.node, False))
    figures = []
    for label, viewer_rate, sessions_rate in VIEWERS:
        rows = samples[label]
        lags = [r[1] for r in rows if r[1] is not None]
        maxes = [r[2] for r in rows if r[2] is not None]
        figures.append(
            ViewerFigures(
                label=label,
                rate=viewer_rate,
                sessions_rate=sessions_rate,
                delivered_cps=median([r[0] for r in rows]),
                ratio=median(ratios[label]),
                lag_p99=median(lags) if lags else None,
                lag_max=max(maxes) if maxes else None,
                cpu_percent=median([r[3] for r in rows]),
                others_cpu_percent=median([r[4] for r in rows]),
                frames_per_s=median([r[5] for r in rows]),
            )
        )
    seconds = scraped["seconds"]
    return ServeResult(
        sessions=sessions,
        rate=rate,
        window_s=window,
        rounds=rounds,
        nominal_cps=sessions * rate,
        viewers=tuple(figures),
        scrape_p50=median(seconds),
        scrape_max=max(seconds),
        scrape_bytes=int(scraped["bytes"]),
        render_metrics_s=render_metrics_s,
        snapshot_s=snapshot_s,
        encode_full_s=encode_full_s,
        encode_light_s=encode_light_s,
        frame_full_bytes=len(full),
        frame_light_bytes=len(light),
    )
