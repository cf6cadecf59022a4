"""The app's own cost: CPU of the app process and key-press-to-screen latency, by session count.

For each count it runs the real app (`sluice --config ...`) in a tmux pane, measures the
process's CPU over a window with psutil, then presses `p` (pause/resume, which redraws the
header) again and again and times how long until `tmux capture-pane` shows the change. The
same config then runs headless (`sluice run --headless --duration`) to give the engine's
CPU without the app, so the difference is what the screen costs. It also times
`engine.snapshot()` in-process, since the app takes one five times a second.

Run from the project root (needs tmux):

    .venv/bin/python -m benchmarks.app_cost --sessions 12 200 1000
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from sluice.engine.config import load_config
from sluice.engine.demo_workload import ContinuousDemo
from sluice.engine.engine import Engine

SESSION_NAME = "sluice-app-cost"
DEMO_LIMIT_CAP = 64  # the demo limit slider's top: with more sessions the rest wait


@dataclass
class Result:
    """Figures for one session count."""

    sessions: int
    demo_limit: int
    app_cpu_percent: float
    headless_cpu_percent: float
    pause_key_ms_p50: float
    pause_key_ms_p90: float
    slider_key_ms_p50: float
    slider_key_ms_p90: float
    in_app_key_ms_p50: float
    in_app_key_ms_p90: float
    snapshot_ms: float
    app_rss_mb: float


def write_config(folder: Path, sessions: int) -> Path:
    """The shipped config with `sessions` demo sessions and the demo limit raised."""
    shipped = Path("config.toml").read_text(encoding="utf-8")
    limit = min(sessions, DEMO_LIMIT_CAP)
    text = shipped.replace("sessions = 12", f"sessions = {sessions}", 1)
    text = text.replace("\ndemo = 4\n", f"\ndemo = {limit}\n", 1)
    path = folder / f"config-{sessions}.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    assert config["demo.sessions"] == sessions, "config edit failed"
    assert config["limits.demo"] == limit, "config edit failed"
    return path


def cpu_percent(pid: int, window: float) -> float:
    """CPU of process `pid` (children included) over `window` seconds, in % of one core."""
    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)]
    before = sum(sum(p.cpu_times()[:2]) for p in procs)
    time.sleep(window)
    after = sum(sum(p.cpu_times()[:2]) for p in procs)
    return 100.0 * (after - before) / window


def tmux(*args: str) -> str:
    """Run a tmux command and return its output."""
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def pane_shows(text: str) -> bool:
    """True when the pane's first line contains `text`."""
    return text in tmux("capture-pane", "-p", "-t", SESSION_NAME, "-S", "0", "-E", "0")


def slider_value() -> int | None:
    """The maxsize slider's value as the pane shows it."""
    match = _MAXSIZE_ROW.search(tmux("capture-pane", "-p", "-t", SESSION_NAME))
    return int(match[1]) if match else None


_MAXSIZE_ROW = re.compile(r"maxsize\s+[━─○●]+\s+(\d+)")


def _paused_is(paused: bool) -> bool:
    """Whether the screen's pause marker is shown exactly when `paused`."""
    return pane_shows("PAUSED") == paused


def _slider_is(value: int) -> bool:
    """Whether the maxsize slider on screen reads `value`."""
    return slider_value() == value


def _wait(condition: Callable[[], bool], started: float, what: str) -> float:
    deadline = started + 5.0
    while not condition():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the app did not show {what} within 5 s")
        time.sleep(0.001)
    return time.perf_counter() - started


def key_latency(presses: int) -> tuple[list[float], list[float]]:
    """Seconds from sending a key to the pane showing its effect, for two keys.

    `p` (pause/resume) redraws the header, and on resume the whole table; Right on the
    focused maxsize slider moves the knob, which the engine applies, and redraws its value.
    """
    pauses = []
    for i in range(presses):
        want_paused = i % 2 == 0
        started = time.perf_counter()
        tmux("send-keys", "-t", SESSION_NAME, "p")
        pauses.append(_wait(functools.partial(_paused_is, want_paused), started, "PAUSED"))
        time.sleep(0.25)
    tmux("send-keys", "-t", SESSION_NAME, "Tab")  # the table -> the first slider (maxsize)
    time.sleep(0.5)
    slides = []
    value = slider_value()
    if value is None:
        raise RuntimeError("cannot find the maxsize slider on screen")
    for i in range(presses):
        key, step = ("Right", 1) if i % 2 == 0 else ("Left", -1)
        started = time.perf_counter()
        tmux("send-keys", "-t", SESSION_NAME, key)
        value += step
        slides.append(_wait(functools.partial(_slider_is, value), started, f"maxsize {value}"))
        time.sleep(0.25)
    return pauses, slides


def measure_app(sluice: str, config: Path, warmup: float, window: float, presses: int) -> tuple:
    """Run the app in tmux; return (cpu %, latency samples, rss MB)."""
    subprocess.run(["tmux", "kill-session", "-t", SESSION_NAME], capture_output=True)
    tmux(
        "new-session", "-d", "-s", SESSION_NAME, "-x", "160", "-y", "48",
        f"{sluice} --config {config}",
    )  # fmt: skip
    try:
        pid = int(tmux("display-message", "-p", "-t", SESSION_NAME, "#{pane_pid}").strip())
        time.sleep(warmup)
        cpu = cpu_percent(pid, window)
        rss = psutil.Process(pid).memory_info().rss / 2**20
        latencies = key_latency(presses)
        tmux("send-keys", "-t", SESSION_NAME, "q")
        for _ in range(100):
            if not psutil.pid_exists(pid):
                break
            time.sleep(0.05)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", SESSION_NAME], capture_output=True)
    return cpu, latencies, rss


def measure_headless(sluice: str, config: Path, warmup: float, window: float) -> float:
    """CPU % of the same engine run without the app."""
    duration = warmup + window + 2
    proc = subprocess.Popen(
        [sluice, "--config", str(config), "run", "--headless", "--duration", str(duration)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(warmup)
        return cpu_percent(proc.pid, window)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def in_app_latency(config: Path, warmup: float, presses: int) -> list[float]:
    """Seconds from a key reaching the app to the next frame composed (headless, in-process).

    This is the app's own share of the key-to-screen time: no terminal, no tmux.
    """
    from textual.screen import Screen

    from sluice.tui.app import SluiceApp

    frames: list[float] = []
    original = Screen._compositor_refresh

    def timed(self: Screen, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        frames.append(time.perf_counter())

    Screen._compositor_refresh = timed  # type: ignore[method-assign]
    try:
        app = SluiceApp(config=load_config(config))
        samples = []
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause(warmup)
            slider = app.query_one("#knob-maxsize")
            slider.focus()
            await pilot.pause(0.2)
            for i in range(presses):
                started = time.perf_counter()
                await pilot.press("right" if i % 2 == 0 else "left")
                await pilot.pause(0.15)
                after = [t for t in frames if t > started]
                if after:
                    samples.append(after[0] - started)
            await pilot.press("q")
        return samples
    finally:
        Screen._compositor_refresh = original  # type: ignore[method-assign]


async def snapshot_cost(config: Path, warmup: float, calls: int = 20) -> float:
    """Milliseconds per `engine.snapshot()` with the config's demo sessions running."""
    async with Engine(load_config(config)) as engine:
        ContinuousDemo(engine).start()
        await asyncio.sleep(warmup)
        started = time.perf_counter()
        for _ in range(calls):
            engine.snapshot()
            await asyncio.sleep(0)
        return (time.perf_counter() - started) / calls * 1e3


def _p90(ordered: list[float]) -> float:
    return ordered[int(0.9 * (len(ordered) - 1))]


def main(argv: list[str] | None = None) -> int:
    """Measure every requested session count and print a Markdown table (and JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[12, 200, 1000])
    parser.add_argument("--warmup", type=float, default=6.0, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=10.0, help="seconds of CPU measured")
    parser.add_argument("--presses", type=int, default=20, help="key presses timed")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if shutil.which("tmux") is None:
        sys.stderr.write("app_cost: needs tmux on PATH\n")
        return 2
    sluice = str(Path(sys.executable).with_name("sluice"))
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sessions:
            config = write_config(Path(folder), n)
            cpu, lat, rss = measure_app(sluice, config, args.warmup, args.window, args.presses)
            headless = measure_headless(sluice, config, args.warmup, args.window)
            snap_ms = asyncio.run(snapshot_cost(config, min(args.warmup, 3.0)))
            pause_ms = sorted(x * 1e3 for x in lat[0])
            slide_ms = sorted(x * 1e3 for x in lat[1])
            warm = min(args.warmup, 3.0)
            inner = asyncio.run(in_app_latency(config, warm, args.presses))
            inner_ms = sorted(x * 1e3 for x in inner)
            results.append(
                Result(
                    sessions=n,
                    demo_limit=load_config(config)["limits.demo"],
                    app_cpu_percent=round(cpu, 1),
                    headless_cpu_percent=round(headless, 1),
                    pause_key_ms_p50=round(statistics.median(pause_ms), 1),
                    pause_key_ms_p90=round(_p90(pause_ms), 1),
                    slider_key_ms_p50=round(statistics.median(slide_ms), 1),
                    slider_key_ms_p90=round(_p90(slide_ms), 1),
                    in_app_key_ms_p50=round(statistics.median(inner_ms), 1),
                    in_app_key_ms_p90=round(_p90(inner_ms), 1),
                    snapshot_ms=round(snap_ms, 2),
                    app_rss_mb=round(rss, 1),
                )
            )
            print(f"measured {n} sessions", file=sys.stderr)
    print(
        "| sessions | demo limit | app CPU | same engine headless | app's own CPU "
        "| `p` key->screen p50 / p90 | slider key->screen p50 / p90 "
        "| in-app key->frame p50 / p90 | snapshot() | app RSS |"
    )
    print("|---:|---:|---:|---:|---:|---|---|---|---:|---:|")
    for r in results:
        own = r.app_cpu_percent - r.headless_cpu_percent
        print(
            f"| {r.sessions:,} | {r.demo_limit} | {r.app_cpu_percent:.0f}% "
            f"| {r.headless_cpu_percent:.0f}% | {own:.0f}% "
            f"| {r.pause_key_ms_p50:.0f} / {r.pause_key_ms_p90:.0f} ms "
            f"| {r.slider_key_ms_p50:.0f} / {r.slider_key_ms_p90:.0f} ms "
            f"| {r.in_app_key_ms_p50:.0f} / {r.in_app_key_ms_p90:.0f} ms "
            f"| {r.snapshot_ms:.1f} ms | {r.app_rss_mb:.0f} MB |"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
