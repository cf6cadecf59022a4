"""Stop signals: which ones end a `sluice` process, the exit code each gives, and installing
handlers.

`kill`, `timeout`, docker and systemd send SIGTERM, a closed terminal sends SIGHUP, Ctrl+C
sends SIGINT. Sluice treats all three alike (cancel every session, close every stream, report,
restore the terminal) and exits with the shell's convention, 128 + the signal's number.
`ExitCode` (cli/command.py) takes its signal codes from the table here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import MappingProxyType

__all__ = ["HARD_STOP_AFTER", "STOP_SIGNALS", "signal_name", "stop_signals"]

# Seconds a stop may take, counted from the first stop signal, before the process ends
# itself. Longer than a clean stop (each session's 5 s grace, then 1 s for leftovers), and
# shorter than the 90 s systemd waits before SIGKILL. It is the backstop for a stop that
# blocks the event loop itself (seen: Textual's writer thread waiting on a dead terminal),
# where no handler on that loop can run again.
HARD_STOP_AFTER = 15.0

# What a terminal needs back when the app could not restore it: the main screen, the cursor,
# no mouse tracking.
_TERMINAL_RESET = "\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1015l\x1b[?25h\x1b[?1049l"

# The one place that says which signals stop Sluice and what each exit code is.
STOP_SIGNALS = MappingProxyType(
    {
        signal.SIGINT: 130,  # Ctrl+C
        signal.SIGTERM: 143,  # kill, timeout, docker stop, systemd
        signal.SIGHUP: 129,  # the terminal went away
    }
)


def signal_name(sig: signal.Signals) -> str:
    """`SIGTERM`, or `SIGINT (Ctrl+C)`: how a message names the signal."""
    return "SIGINT (Ctrl+C)" if sig == signal.SIGINT else sig.name


def _hard_stop(sig: signal.Signals, after: float, terminal: bool) -> None:
    """End the process now: the stop that `sig` asked for did not finish in `after` s."""
    if terminal:
        with contextlib.suppress(OSError):
            if os.isatty(1):
                os.write(1, _TERMINAL_RESET.encode())
    with contextlib.suppress(OSError):
        message = f"sluice: still not stopped {after:g}s after {sig.name}; exiting now\n"
        os.write(2, message.encode())
    os._exit(STOP_SIGNALS[sig])


@contextlib.contextmanager
def stop_signals(
    on_stop: Callable[[signal.Signals], object],
    *,
    hard_stop_after: float = HARD_STOP_AFTER,
    terminal: bool = False,
) -> Iterator[bool]:
    """Call `on_stop(sig)` on the running loop when a stop signal arrives, inside the block.

    The first stop signal also arms a watchdog thread: if the block has not been left
    `hard_stop_after` seconds later, the process exits with the signal's code (after
    resetting the terminal's modes when `terminal`), so a stop is bounded even when the
    loop itself hangs. Yields False (and installs nothing) when handlers cannot be set: not
    the main thread, or a loop without signal support. The previous handlers are put back
    on leaving.
    """
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    installed: list[signal.Signals] = []
    watchdog: list[threading.Timer] = []

    def stop(sig: signal.Signals) -> None:
        if not watchdog:
            timer = threading.Timer(hard_stop_after, _hard_stop, (sig, hard_stop_after, terminal))
            timer.daemon = True
            timer.name = "sluice-stop-watchdog"
            watchdog.append(timer)
            timer.start()
        on_stop(sig)

    try:
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop, sig)
            installed.append(sig)
    except (NotImplementedError, RuntimeError, ValueError):
        pass
    try:
        yield len(installed) == len(STOP_SIGNALS)
    finally:
        for timer in watchdog:
            timer.cancel()
        for sig in installed:
            loop.remove_signal_handler(sig)
            handler = previous[sig]
            if handler is not None:
                signal.signal(sig, handler)
