"""Agent back-pressure: does a slow consumer stop the Claude Code CLI, or does memory grow?

One agent session (the real Claude Agent SDK, `AgentBackend`) runs the fake CLI
(`fake_claude_cli.py`, scenario `flood`), which writes N text deltas to its stdout as fast as
the pipe takes them and keeps the count it has written in a file. The consumer is paused.
With a bounded session buffer, the buffer fills, the producer stops asking the SDK for
messages, the SDK's queue (100 messages) fills, its reader stops reading stdout, asyncio's
pipe reader pauses past its high-water mark, the pipe (64 KiB) fills and the CLI blocks in
`write` (`/proc/PID/wchan` says `pipe_write`): what it wrote by then is all this process can
hold. With `maxsize = 0` nothing stops the producer, the whole answer lands in the session's
buffer, and the CLI never blocks. Then the consumer is released and the answer is checked
whole and in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from sluice.bench.fake_cli import cli_processes, write_launcher
from sluice.engine.chunk import Chunk
from sluice.engine.config import Config
from sluice.engine.engine import Engine

__all__ = ["FloodResult", "agent_missing", "measure_flood"]


def agent_missing() -> str | None:
    """Why the agent part cannot run here (the extra is not installed), or None."""
    import importlib.util

    if importlib.util.find_spec("claude_agent_sdk") is None:
        return "needs the Claude Agent SDK: pip install 'sluice[agent]'"
    return None


HOLD_S = 0.5  # how long the blocked state is watched for growth
POLL_S = 0.02


@dataclass(frozen=True, slots=True)
class FloodResult:
    """One flood run. `written` is the deltas the CLI had written when the reading side
    stopped: the CLI blocked on the pipe and stayed so, nothing moving, for `HOLD_S`
    (`cli_blocked`), or it wrote its whole answer and left. `written_later` is the same count
    `HOLD_S` later (equal when nothing moved); `depth` and `buffered_bytes` are the session
    buffer's at `written`; RSS is this process's at the start, then, and at the end;
    `drain_s` the time from releasing the consumer to the session's end."""

    deltas: int
    maxsize: int
    cli_blocked: bool
    written: int
    written_later: int
    depth: int
    buffered_bytes: int
    rss_start: int
    rss_paused: int
    rss_end: int
    drain_s: float
    delivered: int
    whole: bool
    cli_left: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FloodResult:
        """The inverse of `to_dict`."""
        return cls(**data)


class _Gate:
    """A consumer that waits until opened, then keeps every text it processes."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.parts: list[str] = []

    async def process(self, batch: Sequence[Chunk]) -> None:
        await self.open.wait()
        self.parts.extend(chunk.text for chunk in batch)

    async def aclose(self) -> None:
        """Nothing to close."""


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the CLI this process starts, restored after."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _written(progress: Path) -> int:
    text = progress.read_text() if progress.exists() else ""
    return int(text) if text.strip() else 0


def _blocked_on_pipe(pid: int) -> bool:
    """Whether the process sleeps in the kernel's pipe write (its stdout is full)."""
    try:
        return "pipe_write" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


async def measure_flood(
    deltas: int = 20_000, maxsize: int = 16, within: float = 60.0
) -> FloodResult:
    """Run the flood once with a paused consumer and a session buffer of `maxsize` chunks."""
    from sluice.engine.backends.agent import AgentBackend  # the extra, only when run

    me = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="sluice-agent-") as folder:
        work = Path(folder)
        progress = work / "progress"
        env = {"FAKE_CLAUDE_PROGRESS": str(progress), "FAKE_CLAUDE_DELTAS": str(deltas)}
        backend = AgentBackend(
            credentials={"ANTHROPIC_API_KEY": "bench-key"},
            cli_path=str(write_launcher(work)),
            timeout_s=within,
        )
        config = Config().with_values(
            {"queue.maxsize": maxsize, "queue.batch_max": 1, "limits.agent": 1}
        )
        gate = _Gate()
        loop = asyncio.get_running_loop()
        rss_start = me.memory_info().rss
        with _environment(env):
            async with Engine(config, consumer=gate, backends={"agent": backend}) as engine:
                session = engine.add_session("[fake:flood] go", "agent")
                deadline = loop.time() + within
                blocked = False
                while not blocked:
                    if loop.time() > deadline:
                        raise TimeoutError("the flood neither blocked nor ended")
                    clis = cli_processes()
                    if not clis and _written(progress) >= deltas:
                        break  # the CLI wrote it all and left: nothing held it back
                    if clis and _blocked_on_pipe(clis[0].pid):
                        # Blocked now; it counts only if it stays so, nothing moving, for
                        # HOLD_S (a busy machine can leave a pipe full for a moment).
                        written = _written(progress)
                        depth, buffered = session.buffer.depth, session.buffer.buffered_bytes
                        rss_paused = me.memory_info().rss
                        await asyncio.sleep(HOLD_S)
                        blocked = _blocked_on_pipe(clis[0].pid) and _written(progress) == written
                        continue
                    await asyncio.sleep(POLL_S)
                if not blocked:
                    written = _written(progress)
                    depth, buffered = session.buffer.depth, session.buffer.buffered_bytes
                    rss_paused = me.memory_info().rss
                    await asyncio.sleep(HOLD_S)
                written_later = _written(progress)
                released = time.perf_counter()
                gate.open.set()
                await engine.wait_idle()
                drain_s = time.perf_counter() - released
                cli_left = len(cli_processes())
        text = "".join(gate.parts)
        expected = "".join(str(n % 10) for n in range(deltas))
        return FloodResult(
            deltas=deltas,
            maxsize=maxsize,
            cli_blocked=blocked,
            written=written,
            written_later=written_later,
            depth=depth,
            buffered_bytes=buffered,
            rss_start=rss_start,
            rss_paused=rss_paused,
            rss_end=me.memory_info().rss,
            drain_s=drain_s,
            delivered=len(gate.parts),
            whole=session.state == "done" and text == expected,
            cli_left=cli_left,
        )
