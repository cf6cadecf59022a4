"""The app under a real pseudo-terminal: SIGTERM or SIGHUP ends it like `q` does, with exit
code 143 / 129 and the terminal restored (alternate screen left, mouse tracking off)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time
from pathlib import Path

import pytest

CONFIG = """\
[limits]
demo = 2
[demo]
sessions = 3
tokens = 100000
rate = 50
ttft_ms = 1
"""

ENTER_ALT, LEAVE_ALT = b"\x1b[?1049h", b"\x1b[?1049l"
MOUSE_ON, MOUSE_OFF = b"\x1b[?1000h", b"\x1b[?1000l"


def read_until(fd: int, buffer: bytearray, done: object, seconds: float) -> bool:
    """Read the terminal's output into `buffer` until `done(buffer)` or EOF or time runs out;
    True if `done` held (EOF counts as done when `done` is None)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(done) and done(buffer):
            return True
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return done is None
        if not data:
            return done is None
        buffer.extend(data)
    return False


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_stop_signal_exits_the_app_normally_and_restores_the_terminal(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    config = tmp_path / "app.toml"
    config.write_text(CONFIG)
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONDEVMODE": "1"}
    env.pop("TEXTUAL", None)
    argv = [sys.executable, "-m", "sluice", "--config", str(config)]
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
        drawn = read_until(
            fd, output, lambda out: ENTER_ALT in out and b"demo-0001" in out, seconds=60
        )
        assert drawn, bytes(output[-2000:])
        signalled_at = len(output)
        os.kill(pid, sig)
        assert read_until(fd, output, None, seconds=60), "the app did not exit"
        _, status = os.waitpid(pid, 0)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == code  # before the fix: killed by the signal
    after = bytes(output[signalled_at:])
    assert LEAVE_ALT in after and MOUSE_OFF in after
    assert output.rfind(LEAVE_ALT) > output.rfind(ENTER_ALT)
    assert output.rfind(MOUSE_OFF) > output.rfind(MOUSE_ON)
    assert b"Traceback" not in output
