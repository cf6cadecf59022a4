"""`sluice attach`: the app on served engines. Two real `sluice serve --demo` subprocesses
driven through the app (knobs to both, then to one; a node killed, shown disconnected,
restarted on its port and reconnected), a wrong token shown as a state, a server's hostile
strings shown as plain text, and the command's bad URLs."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import io
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from textual.pilot import Pilot

from sluice.cli.command import CommandIO
from sluice.cli.main import build_parser, run_command
from sluice.engine.config import Config, load_config
from sluice.engine.control import serve_control
from sluice.engine.control.client import CONNECTED, DISCONNECTED, ControlClient
from sluice.engine.demo_workload import ContinuousDemo
from sluice.engine.engine import Engine
from sluice.tui.app import SluiceApp
from sluice.tui.link import RemoteLink
from sluice.tui.merge import split_key
from sluice.tui.readout import Readout
from sluice.tui.slider import Slider
from sluice.tui.table import SessionTable
from tests.control.helpers import TOKEN
from tests.fakes import ScriptedBackend, wait_until
from tests.test_app_signals import LEAVE_ALT, MOUSE_OFF, read_until

from .helpers import record_notes, screen_text

STARTUP_S = 60.0  # two busy cores: generous
SIZE = (160, 48)

# Light demo sessions that stream for the whole test without loading the machine.
SERVED_TOML = """\
[queue]
maxsize = 16
[limits]
demo = 2
[consumer]
delay_ms = 10
[demo]
sessions = 3
tokens = 100000
rate = 20
ttft_ms = 5
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SLUICE_TOKEN"}


def _readline(stream: IO[str], timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


class Served:
    """One `sluice serve --demo` subprocess in its own folder (its config `toml`),
    restartable on its port."""

    def __init__(self, folder: Path, toml: str = SERVED_TOML) -> None:
        folder.mkdir()
        self.folder = folder
        (folder / "config.toml").write_text(toml)
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, bind: str = "127.0.0.1:0", *options: str) -> None:
        with open(self.folder / "stderr.log", "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sluice", "serve", "--demo", "--bind", bind, *options],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=_env(),
                cwd=self.folder,
            )
        assert self.proc.stdout is not None
        url = _readline(self.proc.stdout, STARTUP_S).strip()
        if not url.startswith("http://127.0.0.1:"):
            self.kill()
            pytest.fail(f"no URL printed (got {url!r}): {(self.folder / 'stderr.log').read_text()}")
        self.url = url

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=STARTUP_S)

    def knob(self, name: str) -> Any:
        """The knob's value as the served engine reports it (its own /v1/snapshot)."""
        doc = httpx.get(f"{self.url}/v1/snapshot", timeout=30).json()
        return doc["knobs"][name]["value"]


@contextmanager
def two_nodes(tmp_path: Path) -> Iterator[tuple[Served, Served]]:
    nodes = (Served(tmp_path / "a"), Served(tmp_path / "b"))
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.kill()


def _link(urls: list[str], token: str | None = None) -> RemoteLink:
    client = functools.partial(ControlClient, token=token, backoff=(0.1, 0.5))
    return RemoteLink(urls, client=client)


async def _until(pilot: Pilot[Any], condition: Callable[[], bool], within: float = 60) -> None:
    await wait_until(condition, within, pause=pilot.pause)


async def _knob_is(pilot: Pilot[Any], node: Served, name: str, value: Any) -> None:
    """Poll the served engine (off the loop) until its knob has `value`."""
    for _ in range(600):
        if await asyncio.to_thread(node.knob, name) == value:
            return
        await pilot.pause(0.1)
    raise AssertionError(f"{node.url}: {name} never became {value!r}")


async def test_attach_tunes_both_nodes_then_one_and_follows_a_node_that_dies_and_returns(
    tmp_path: Path,
) -> None:
    with two_nodes(tmp_path) as (a, b):
        app = SluiceApp(link=_link([a.url, b.url]))
        async with app.run_test(size=SIZE) as pilot:
            link = app.link
            await _until(pilot, lambda: all(n.status.state == CONNECTED for n in link.nodes()))
            table = app.query_one("#sessions", SessionTable)
            # Both nodes' sessions, the same ids twice, told apart by the node column.
            await _until(pilot, lambda: table.row_count == 6)
            assert "node" in [c.key for c, _ in table.shown]
            text = screen_text(app)
            assert text.count("demo-0001") == 2 and "to all 2 nodes (w: switch)" in text

            # A slider moves: both engines get the new maxsize.
            app.query_one("#knob-maxsize").focus()
            await pilot.press("right")
            await _knob_is(pilot, a, "queue.maxsize", 17)
            await _knob_is(pilot, b, "queue.maxsize", 17)

            # Knobs to the first node only: only it changes, the other keeps its value.
            await pilot.press("w")
            assert link.target is not None
            await _until(pilot, lambda: "◆ knobs" in screen_text(app))
            app.query_one("#knob-maxsize").focus()
            await pilot.press("right")
            await _knob_is(pilot, a, "queue.maxsize", 18)
            assert await asyncio.to_thread(b.knob, "queue.maxsize") == 17
            await pilot.press("w")  # the second node alone
            await pilot.press("w")  # every node again: they disagree now
            await _until(pilot, lambda: "mixed" in screen_text(app))

            # The second node dies: shown disconnected, the app keeps going.
            port = b.url.rpartition(":")[2]
            b.kill()
            await _until(pilot, lambda: link.nodes()[1].status.state == DISCONNECTED)
            await _until(pilot, lambda: "disconnected" in screen_text(app))
            await _until(pilot, lambda: table.row_count == 3)
            # ... and restarted on the same port it comes back by itself.
            await asyncio.to_thread(b.start, f"127.0.0.1:{port}")
            await _until(pilot, lambda: link.nodes()[1].status.state == CONNECTED)
            await _until(pilot, lambda: table.row_count == 6)
            await pilot.press("q")
        assert app.return_code == 0
        # Quitting the viewer leaves the served engines as they were.
        assert await asyncio.to_thread(a.knob, "queue.maxsize") == 18


async def test_a_wrong_token_is_shown_as_the_nodes_state_not_a_crash() -> None:
    async with Engine(Config()) as engine, serve_control(engine, token=TOKEN) as server:
        app = SluiceApp(link=_link([server.url], token="not-the-token"))
        notes = record_notes(app)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: "HTTP 401" in screen_text(app))
            text = screen_text(app)
            assert "disconnected" in text and "SLUICE_TOKEN" in text
            assert "not-the-token" not in text and TOKEN not in text
            app.query_one("#knob-maxsize").focus()
            await pilot.press("right")
            await _until(pilot, lambda: any("no target node" in m for m, _ in notes))
            await pilot.press("t")  # calibration runs in-process only: said so
            assert any("sluice calibrate" in m for m, _ in notes)
            await pilot.press("q")
        assert app.return_code == 0


async def test_with_every_node_down_the_header_says_unknown_and_the_knobs_stay() -> None:
    """Not zeros that look measured, nor the built-in defaults shown as unsaved changes."""
    async with Engine(Config().with_values({"queue.maxsize": 41})) as one, Engine(Config()) as two:
        first = await serve_control(one, token=None, node="one").start()
        second = await serve_control(two, token=None, node="two").start()
        app = SluiceApp(link=_link([first.url, second.url]))
        async with app.run_test(size=SIZE) as pilot:
            link = app.link
            await _until(pilot, lambda: all(n.live for n in link.nodes()))
            await _until(pilot, lambda: " on 2 nodes" in screen_text(app))
            assert "machine" not in screen_text(app).splitlines()[0]  # no summed limit
            await second.stop()
            await _until(pilot, lambda: " on 2 nodes" not in screen_text(app))
            await _until(pilot, lambda: "machine" in screen_text(app))  # one node: its own
            app.query_one("#knob-maxsize").focus()  # the target is "one": 41 there
            await _until(pilot, lambda: app.query_one("#knob-maxsize", Slider).value == 41)
            await first.stop()
            await _until(pilot, lambda: "no node connected: figures unknown" in screen_text(app))
            text = screen_text(app)
            assert "RSS 0B" not in text and "0B/0B" not in text
            assert app.query_one("#knob-maxsize", Slider).value == 41  # as last seen
            # The last minute's figures: not current, so not shown as zeros either.
            def shown(key: str) -> str:
                return app.query_one(f"#spark-value-{key}", Readout).plain.strip()

            await _until(pilot, lambda: shown("rate") == "-")
            assert shown("rss") == "-"
            assert "maxsize*" not in text.replace(" ", "")
            await pilot.press("q")
        assert app.return_code == 0


HOSTILE = "[bold red]boom[/] [link=http://x]y[/link]"


async def test_a_servers_strings_are_shown_as_written() -> None:
    backend = ScriptedBackend(["a"] * 3, name="[b]fake[/b]", fail_after=2)
    async with Engine(Config()) as engine:
        engine.add_backend(backend)
        engine.add_session("p", backend.name, session_id=f"id{HOSTILE}")
        async with serve_control(engine, token=None, node=f"node{HOSTILE}") as server:
            app = SluiceApp(link=_link([server.url]))
            async with app.run_test(size=(200, 50)) as pilot:
                await _until(pilot, lambda: app.query_one(SessionTable).row_count == 1)
                await _until(pilot, lambda: "failed" in screen_text(app))
                # The header and the nodes line follow at their own pace (once a second).
                await _until(pilot, lambda: "[b]fake[/b]" in screen_text(app))
                await _until(pilot, lambda: f"node{HOSTILE}"[:30] in screen_text(app))
                assert "[bold red]boom" in screen_text(app)
                await pilot.press("enter")  # the detail screen, plain text too
                await _until(pilot, lambda: "broke after 2 chunks" in screen_text(app))
                assert f"id{HOSTILE}" in screen_text(app)
                await pilot.press("escape", "q")


@pytest.mark.parametrize(
    ("urls", "shown"),
    [
        (["http://127.0.0.1:8321", "ftp://x:1"], "scheme 'ftp' not allowed"),
        (["http://ops:secret@[bad"], "http://***@[bad"),
        (["http://127.0.0.1:8321/v1/events"], "no path or query"),
    ],
)
def test_a_bad_url_is_one_line_and_exit_2(urls: list[str], shown: str) -> None:
    err = io.StringIO()
    args = build_parser().parse_args(["attach", *urls])
    code = run_command(args, CommandIO(stdout=io.StringIO(), stderr=err, environ={}))
    assert code == 2
    line = err.getvalue()
    assert line.count("\n") == 1 and line.startswith("sluice attach: URL ")
    assert shown in line and "secret" not in line


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_ends_attach_restores_the_terminal_and_leaves_the_node_running(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    node = Served(tmp_path / "node")
    node.start()
    env = {**_env(), "TERM": "xterm-256color"}
    env.pop("TEXTUAL", None)
    argv = [sys.executable, "-m", "sluice", "attach", node.url]
    pid, fd = pty.fork()
    if pid == 0:  # the child: a 100x30 terminal, then the app
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
            os.chdir(tmp_path)
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(127)
    output = bytearray()
    try:
        drawn = read_until(fd, output, lambda out: b"demo-0001" in out, seconds=60)
        assert drawn, bytes(output[-2000:])
        signalled_at = len(output)
        os.kill(pid, sig)
        assert read_until(fd, output, None, seconds=60), "the app did not exit"
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == code
        after = bytes(output[signalled_at:])
        assert LEAVE_ALT in after and MOUSE_OFF in after and b"Traceback" not in output
        assert node.knob("queue.maxsize") == 16  # the served engine goes on
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
        node.kill()


async def test_s_saves_on_each_node_c_cancels_on_its_node_n_adds_on_each(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(SERVED_TOML)
    config = load_config(path)
    async with (
        Engine(config) as saving,
        Engine(replace(config, path=None, source=None)) as fileless,
        serve_control(saving, token=None, node="saving") as first,
        serve_control(fileless, token=None, node="fileless") as second,
    ):
        for engine in (saving, fileless):
            ContinuousDemo(engine).start()
        app = SluiceApp(link=_link([first.url, second.url]))
        notes = record_notes(app)
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one("#sessions", SessionTable)
            await _until(pilot, lambda: table.row_count == 6)

            # A slider key and `s` at once (a fast typist): the move is saved, not the value
            # before it (the save waits behind the node's knob change).
            slider = app.query_one("#knob-maxsize", Slider)
            slider.focus()
            await pilot.pause()
            before = saving.knob("queue.maxsize")
            slider.action_move(1)  # its Changed message still queued when `s` is handled
            app.action_save()  # each node saves on its own side, or says why not
            await _until(pilot, lambda: any(kw.get("title") == "not saved" for _, kw in notes))
            assert load_config(path)["queue.maxsize"] == before + 1
            message = next(m for m, kw in notes if kw.get("title") == "not saved")
            assert f"saving: saved {path}" in message
            assert "fileless: HTTP 409: this engine has no config file" in message
            assert path.with_name("config.toml.bak").exists()

            key = table.selected_id
            assert key is not None
            node, session_id = split_key(key)
            engine = saving if node == "1" else fileless
            await pilot.press("c")  # on the session's own node
            await _until(pilot, lambda: engine.sessions[session_id].state == "cancelled")
            other = fileless if engine is saving else saving
            assert other.sessions[session_id].state != "cancelled"  # the same id elsewhere

            await pilot.press("n")  # demo sess. up by 10 on every node
            await _until(pilot, lambda: saving.knob("demo.sessions") == 13)
            await _until(pilot, lambda: fileless.knob("demo.sessions") == 13)
            await pilot.press("q")
