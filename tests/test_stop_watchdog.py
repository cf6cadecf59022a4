"""A stop that blocks the event loop itself still ends the process (cli/signals.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

# A loop whose stop handler blocks the whole loop, as Textual's shutdown did when its writer
# thread waited on a dead terminal: no asyncio handler can run again after it.
STUCK = """
import asyncio, sys, time
from sluice.cli.signals import stop_signals

async def main() -> None:
    with stop_signals(lambda sig: time.sleep(3600), hard_stop_after=float(sys.argv[1])):
        print("ready", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


def _start(after: float) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", STUCK, str(after)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    return child


def test_a_stop_that_hangs_the_loop_ends_the_process_with_the_signals_code() -> None:
    child = _start(0.5)
    try:
        child.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = child.wait(timeout=60)
        _, err = child.communicate()
    finally:
        child.kill()
    assert code == 143
    assert err.strip() == "sluice: still not stopped 0.5s after SIGTERM; exiting now"
    assert time.monotonic() - started < 60


FINISHES = """
import asyncio, os, signal, sys, time
from sluice.cli.signals import stop_signals

async def main() -> None:
    with stop_signals(lambda sig: None, hard_stop_after=float(sys.argv[1])):
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.1)  # the handler runs: the watchdog is armed

asyncio.run(main())
time.sleep(1.0)  # well past the watchdog's time: it must have been called off
"""


def test_a_stop_that_finishes_disarms_the_watchdog() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FINISHES, "0.3"], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (0, "")
