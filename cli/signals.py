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
import signal
from collections.abc import Callable, Iterator
from types import MappingProxyType

__all__ = ["STOP_SIGNALS", "signal_name", "stop_signals"]

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


@contextlib.contextmanager
def stop_signals(on_stop: Callable[[signal.Signals], object]) -> Iterator[bool]:
    """Call `on_stop(sig)` on the running loop when a stop signal arrives, inside the block.

    Yields False (and installs nothing) when handlers cannot be set: not the main thread, or
    a loop without signal support. The previous handlers are put back on leaving.
    """
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    installed: list[signal.Signals] = []
    try:
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, on_stop, sig)
            installed.append(sig)
    except (NotImplementedError, RuntimeError, ValueError):
        pass
    try:
        yield len(installed) == len(STOP_SIGNALS)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
            handler = previous[sig]
            if handler is not None:
                signal.signal(sig, handler)
