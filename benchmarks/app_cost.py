"""The app's own cost, part `app` of `sluice bench`: CPU, key-to-screen latency, snapshot().

For each session count and demo limit it runs the real app (`sluice --config ...`) in a
160x48 tmux pane with that many demo sessions kept running, measures the process's CPU over a window
(psutil), then presses keys and times how long until `tmux capture-pane` shows their effect:
`p` (pause/resume: redraws the header, and the whole table on resume) and Right/Left on the
focused `maxsize` slider (the engine resizes every live buffer and the value is redrawn).
The same config then runs headless (`sluice run --headless --duration`) for the engine's CPU
without the screen, and in-process it times `engine.snapshot()` and, through Textual's test
driver, key press to the next composed frame (the app's own share of the latency, no tmux).
Attach mode: the same config served by `sluice serve --demo` and watched by `sluice attach
URL` in the pane: both processes' CPU over one window, and Right/Left on the maxsize slider
until the pane shows the value and until the served engine's `GET /v1/knobs` reports it.
Needs tmux on PATH.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from sluice.bench.measure import machine_busy_seconds, median
from sluice.engine.config import Config, load_config
from sluice.engine.config_save import save_config
from sluice.engine.demo_workload import ContinuousDemo
from sluice.engine.engine import Engine

__all__ = [
    "AppCostResult",
    "AttachCost",
    "measure_app_cost",
    "p99",
    "sluice_command",
    "tmux_missing",
    "write_config",
]

DEMO_LIMIT_CAP = 64  # the demo limit slider's top: with more sessions the rest wait
PANE = (160, 48)
LAG_LABEL = "lag p99 10s"
_MAXSIZE_ROW = re.compile(r"maxsize\s+[━─○●]+\s+(\d+)")


@dataclass(frozen=True, slots=True)
class AttachCost:
    """`sluice attach` on a served engine (CPU in % of one core, times in ms): the viewer's
    and the served engine's CPU over the same window; per slider press, key to the pane
    showing the value and key to the engine reporting it through the API."""

    attach_cpu_percent: float
    served_cpu_percent: float
    others_cpu_percent: float
    screen_ms: tuple[float, ...]
    engine_ms: tuple[float, ...]
    attach_rss_mb: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["screen_ms"] = list(self.screen_ms)
        data["engine_ms"] = list(self.engine_ms)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttachCost:
        """Rebuild from `to_dict()` output."""
        return cls(
            **{
                **data,
                "screen_ms": tuple(data["screen_ms"]),
                "engine_ms": tuple(data["engine_ms"]),
            }
        )


@dataclass(frozen=True, slots=True)
class AppCostResult:
    """What the app costs at one session count (CPU in % of one core, times in ms)."""

    sessions: int
    demo_limit: int
    app_cpu_percent: float
    headless_cpu_percent: float
    others_cpu_percent: float  # the rest of the machine during the app's window: the noise
    key_ms: tuple[float, ...]  # every key press, `p` and slider, key to screen through tmux
    in_app_key_ms: tuple[float, ...]  # key press to the next frame composed, in-process
    snapshot_ms: float
    app_rss_mb: float
    lag_label_shown: bool  # the header showed the 10 s loop-lag p99
    attach: AttachCost | None = None  # the same sessions served, the app attached

    @property
    def key_ms_p50(self) -> float:
        """Median key-to-screen time."""
        return median(self.key_ms)

    @property
    def key_ms_p99(self) -> float:
        """Nearest-rank p99 of the key-to-screen times."""
        return p99(self.key_ms)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["key_ms"] = list(self.key_ms)
        data["in_app_key_ms"] = list(self.in_app_key_ms)
        data["attach"] = self.attach.to_dict() if self.attach is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppCostResult:
        """Rebuild from `to_dict()` output."""
        attach = data.get("attach")
        return cls(
            **{
                **data,
                "key_ms": tuple(data["key_ms"]),
                "in_app_key_ms": tuple(data["in_app_key_ms"]),
                "attach": AttachCost.from_dict(attach) if attach else None,
            }
        )


def p99(values: Sequence[float]) -> float:
    """Nearest-rank 99th percentile (with fewer than 100 values, the largest)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(0.99 * len(ordered))) - 1]


def tmux_missing() -> str | None:
    """Why the part cannot run here, or None when tmux is on PATH."""
    if shutil.which("tmux") is None:
        return "needs tmux on PATH to drive the app in a terminal (e.g. apt install tmux)"
    return None


def sluice_command() -> list[str]:
    """The `sluice` command of this Python: the console script beside it, else `-m sluice`."""
    script = Path(sys.executable).with_name("sluice")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sluice"]


def write_config(folder: Path, sessions: int, limit: int) -> Path:
    """The default config with `sessions` demo sessions and demo limit `limit`, written to
    `folder`."""
    path = folder / f"config-{sessions}-{limit}.toml"
    save_config(Config().with_values({"demo.sessions": sessions, "limits.demo": limit}), path)
    loaded = load_config(path)
    if loaded["demo.sessions"] != sessions or loaded["limits.demo"] != limit:
        raise RuntimeError(f"{path}: the written config does not read back as intended")
    return path


def _cpu_seconds(procs: Sequence[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            total += sum(proc.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def cpu_percent(pid: int, window: float) -> tuple[float, float]:
    """(CPU of process `pid` and its children, CPU of everything else) over `window`
    seconds, in % of one core."""
    (used,), others = cpu_percents([pid], window)
    return used, others


def cpu_percents(pids: Sequence[int], window: float) -> tuple[list[float], float]:
    """(CPU of each process in `pids` with its children, CPU of everything else) over the
    same `window` seconds, in % of one core."""
    trees = []
    for pid in pids:
        proc = psutil.Process(pid)
        trees.append([proc, *proc.children(recursive=True)])
    before, busy = [_cpu_seconds(t) for t in trees], machine_busy_seconds()
    time.sleep(window)
    used = [_cpu_seconds(t) - b for t, b in zip(trees, before, strict=True)]
    others = machine_busy_seconds() - busy - sum(used)
    return [100.0 * u / window for u in used], max(0.0, 100.0 * others / window)


class Pane:
    """One tmux session running a command in a fixed-size window.

    The tmux server may be shared with other users of the machine: the session's name is
    unique to this process, and every command targets it by exact name (`=name`; a bare
    name would also match another session by prefix).
    """

    def __init__(self, label: str, command: list[str]) -> None:
        self.name = f"{label}-{os.getpid()}"
        self.target = f"={self.name}:"  # its (only) pane
        width, height = PANE
        # COLUMNS/LINES, if set where tmux's server started (pytest sets them), would
        # override the pane's size for the app: set them to the pane's.
        self._tmux(
            "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
            "-e", f"COLUMNS={width}", "-e", f"LINES={height}", shlex.join(command),
        )  # fmt: skip
        # If the app exits, its pane stays (with what it printed) for the error message.
        self._tmux("set-window-option", "-t", self.target, "remain-on-exit", "on")
        self.pid = int(self._tmux("display-message", "-p", "-t", self.target, "#{pane_pid}"))

    def check_alive(self) -> None:
        """RuntimeError with the pane's last lines if the app has exited."""
        if self._tmux("display-message", "-p", "-t", self.target, "#{pane_dead}").strip() == "1":
            tail = " | ".join(line for line in self.text().splitlines() if line.strip())[-400:]
            raise RuntimeError(f"the app exited: {tail}")

    def _tmux(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(["tmux", *args], capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(
                f"tmux {args[0]} failed ({done.stderr.strip() or done.returncode}): the session "
                f"{getattr(self, 'name', '?')} is gone (something ended it or the tmux server)"
            )
        return done.stdout

    def text(self, first_line_only: bool = False, line: int | None = None) -> str:
        """What the pane shows now (all of it, or one line: a cheaper capture)."""
        if first_line_only:
            line = 0
        extra = ("-S", str(line), "-E", str(line)) if line is not None else ()
        return self._tmux("capture-pane", "-p", "-t", self.target, *extra)

    def wait_for(self, text: str, within: float) -> None:
        """Wait until the pane shows `text` (RuntimeError after `within` seconds)."""
        deadline = time.monotonic() + within
        while text not in self.text():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app did not show {text!r} within {within:g} s")
            time.sleep(0.1)

    def send(self, key: str, check: bool = True) -> None:
        """Press `key` (tmux key names: p, Tab, Right, ...)."""
        self._tmux("send-keys", "-t", self.target, key, check=check)

    def close(self) -> None:
        """Quit the app (twice: the second `q` confirms if knobs were left unsaved)."""
        for _ in range(2):
            if not psutil.pid_exists(self.pid):
                break
            self.send("q", check=False)
            for _ in range(40):
                if not psutil.pid_exists(self.pid):
                    break
                time.sleep(0.05)
        self._tmux("kill-session", "-t", f"={self.name}", check=False)


def _wait(pane: Pane, condition: Callable[[], bool], started: float, what: str) -> float:
    deadline = started + 5.0
    while not condition():
        if time.perf_counter() > deadline:
            pane.check_alive()
            raise RuntimeError(f"the app did not show {what} within 5 s")
        time.sleep(0.001)
    return time.perf_counter() - started


def _maxsize_line(pane: Pane) -> int | None:
    """The pane line showing the maxsize slider."""
    for number, text in enumerate(pane.text().splitlines()):
        if _MAXSIZE_ROW.search(text):
            return number
    return None


def _maxsize_shown(pane: Pane, line: int | None = None) -> int | None:
    match = _MAXSIZE_ROW.search(pane.text(line=line))
    return int(match[1]) if match else None


def _paused_is(pane: Pane, paused: bool) -> bool:
    return ("PAUSED" in pane.text(first_line_only=True)) == paused


def _maxsize_is(pane: Pane, line: int, value: int) -> bool:
    return _maxsize_shown(pane, line) == value


def key_latency(pane: Pane, presses: int) -> list[float]:
    """Seconds from `tmux send-keys` to the pane showing the key's effect, `presses` times
    `p` then `presses` times Right/Left on the maxsize slider (an even count leaves every
    knob as it was)."""
    samples = []
    for i in range(presses):
        started = time.perf_counter()
        pane.send("p")
        samples.append(
            _wait(pane, functools.partial(_paused_is, pane, i % 2 == 0), started, "PAUSED")
        )
        time.sleep(0.2)
    if presses % 2:
        pane.send("p")  # back to live
    return samples + slider_latency(pane, presses)[0]


def slider_latency(
    pane: Pane, presses: int, engine_has: Callable[[int], bool] | None = None
) -> tuple[list[float], list[float]]:
    """Tab to the maxsize slider, then `presses` times Right/Left: seconds from `tmux
    send-keys` to the pane showing the new value, and (with `engine_has`, asked whether
    the engine reports a value) to the engine having it."""
    pane.send("Tab")  # the table -> the first slider (maxsize)
    time.sleep(0.5)
    line = _maxsize_line(pane)
    value = _maxsize_shown(pane, line)
    if line is None or value is None:
        raise RuntimeError("cannot find the maxsize slider on screen")
    screen: list[float] = []
    engine: list[float] = []
    for i in range(presses):
        key, step = ("Right", 1) if i % 2 == 0 else ("Left", -1)
        started = time.perf_counter()
        pane.send(key)
        value += step
        shown = functools.partial(_maxsize_is, pane, line, value)
        if engine_has is None:
            screen.append(_wait(pane, shown, started, f"maxsize {value}"))
        else:
            seen, had = _wait_both(pane, shown, functools.partial(engine_has, value), started)
            screen.append(seen)
            engine.append(had)
        time.sleep(0.2)
    return screen, engine


def _wait_both(
    pane: Pane, shown: Callable[[], bool], had: Callable[[], bool], started: float
) -> tuple[float, float]:
    """Seconds until `shown()` and until `had()` first held, polling both in turn."""
    seen_at = had_at = None
    deadline = started + 5.0
    while seen_at is None or had_at is None:
        if time.perf_counter() > deadline:
            pane.check_alive()
            raise RuntimeError("the attached app or the served engine did not follow within 5 s")
        if seen_at is None and shown():
            seen_at = time.perf_counter() - started
        if had_at is None and had():
            had_at = time.perf_counter() - started
        time.sleep(0.001)
    return seen_at, had_at


async def in_app_latency(config: Path, warmup: float, presses: int) -> list[float]:
    """Seconds from a key press to the next frame the app composes (Textual's headless
    driver, in this process): the app's own share of the key-to-screen time."""
    from textual.screen import Screen

    from sluice.tui.app import SluiceApp

    frames: list[float] = []
    original = Screen._compositor_refresh

    def timed(self: Screen[Any]) -> None:
        original(self)
        frames.append(time.perf_counter())

    Screen._compositor_refresh = timed  # type: ignore[method-assign]
    try:
        app = SluiceApp(config=load_config(config))
        samples = []
        async with app.run_test(size=PANE) as pilot:
            await pilot.pause(warmup)
            app.query_one("#knob-maxsize").focus()
            await pilot.pause(0.2)
            for i in range(presses + presses % 2):
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
        total = 0.0
        for _ in range(calls):
            started = time.perf_counter()
            engine.snapshot()
            total += time.perf_counter() - started
            await asyncio.sleep(0.01)
        return total / calls * 1e3


def measure_headless(config: Path, warmup: float, window: float) -> float:
    """CPU % of the same engine run without the app."""
    duration = warmup + window + 2
    command = [*sluice_command(), "--config", str(config), "run", "--headless"]
    proc = subprocess.Popen(
        [*command, "--duration", str(duration)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(warmup)
        return cpu_percent(proc.pid, window)[0]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Served:
    """`sluice serve --demo` on a free port with `config`, for the attached app."""

    def __init__(self, config: Path) -> None:
        command = [*sluice_command(), "--config", str(config), "serve", "--demo"]
        self.proc = subprocess.Popen(
            [*command, "--bind", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "SLUICE_TOKEN"},
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.close()
            raise RuntimeError(f"sluice serve printed no URL (got {self.url!r})")
        self.http = httpx.Client(base_url=self.url, timeout=10, trust_env=False)

    def maxsize_is(self, value: int) -> bool:
        """True when the served engine reports `queue.maxsize` = `value`."""
        return bool(self.http.get("/v1/knobs").json()["knobs"]["queue.maxsize"]["value"] == value)

    def close(self) -> None:
        """SIGTERM, as an operator stops it."""
        if getattr(self, "http", None) is not None:
            self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def measure_attach(config: Path, warmup: float, window: float, presses: int) -> AttachCost:
    """`sluice attach URL` in the pane on `sluice serve --demo` with the same config."""
    served = Served(config)
    try:
        label = f"attach-{os.getpid()}-{config.stem}"
        pane = Pane(label, [*sluice_command(), "attach", served.url])
        try:
            pane.wait_for(LAG_LABEL, within=30.0)  # connected: the node's figures are shown
            time.sleep(warmup)
            (attach_cpu, served_cpu), others = cpu_percents([pane.pid, served.proc.pid], window)
            rss = psutil.Process(pane.pid).memory_info().rss / 2**20
            screen, engine = slider_latency(pane, presses, served.maxsize_is)
        finally:
            pane.close()
    finally:
        served.close()
    return AttachCost(
        attach_cpu_percent=round(attach_cpu, 2),
        served_cpu_percent=round(served_cpu, 2),
        others_cpu_percent=round(others, 1),
        screen_ms=tuple(round(x * 1e3, 2) for x in screen),
        engine_ms=tuple(round(x * 1e3, 2) for x in engine),
        attach_rss_mb=round(rss, 1),
    )


def measure_app_cost(
    sessions: int,
    limit: int | None = None,
    *,
    warmup: float = 5.0,
    window: float = 10.0,
    presses: int = 25,
    attach: bool = True,
) -> AppCostResult:
    """Every figure for one session count and demo limit (default `min(sessions, 64)`);
    about 2 x warmup + window + presses x 0.5 s, and with `attach` (the same sessions
    served, the app attached) warmup + window + presses x 0.3 s more."""
    if limit is None:
        limit = min(sessions, DEMO_LIMIT_CAP)
    reason = tmux_missing()
    if reason is not None:
        raise RuntimeError(reason)
    with tempfile.TemporaryDirectory() as folder:
        config = write_config(Path(folder), sessions, limit)
        pane = Pane(f"appcost-{sessions}-{limit}", [*sluice_command(), "--config", str(config)])
        try:
            pane.wait_for(LAG_LABEL, within=30.0)  # the app is up (keys before are lost)
            time.sleep(warmup)
            app_cpu, others = cpu_percent(pane.pid, window)
            lag_shown = LAG_LABEL in pane.text(first_line_only=True)
            app_rss = psutil.Process(pane.pid).memory_info().rss / 2**20
            keys = key_latency(pane, presses)
        finally:
            pane.close()
        headless = measure_headless(config, warmup, window)
        snap_ms = asyncio.run(snapshot_cost(config, min(warmup, 3.0)))
        inner = asyncio.run(in_app_latency(config, min(warmup, 3.0), presses))
        attached = measure_attach(config, warmup, window, presses) if attach else None
    return AppCostResult(
        sessions=sessions,
        demo_limit=limit,
        app_cpu_percent=round(app_cpu, 2),
        headless_cpu_percent=round(headless, 2),
        others_cpu_percent=round(others, 1),
        key_ms=tuple(round(x * 1e3, 2) for x in keys),
        in_app_key_ms=tuple(round(x * 1e3, 2) for x in inner),
        snapshot_ms=round(snap_ms, 3),
        app_rss_mb=round(app_rss, 1),
        lag_label_shown=lag_shown,
        attach=attached,
    )
