"""Run a command's event loop so that the process always exits, even past stuck tasks.

`asyncio.run` waits without a bound for every task left at the end and for the default
executor's threads, so one consumer that swallows `CancelledError` would keep the process
alive forever. `run_to_exit` gives what is left `grace` seconds after a cancel instead; if
something still runs then, it says so on stderr and ends the process with the command's
exit code right there (`os._exit`), since neither the loop nor the interpreter could close
around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Coroutine
from typing import Any, TextIO

__all__ = ["LEFTOVER_GRACE", "run_to_exit"]

LEFTOVER_GRACE = 1.0  # seconds for tasks still pending after the command returned


def run_to_exit(
    main: Coroutine[Any, Any, int], *, grace: float = LEFTOVER_GRACE, stderr: TextIO | None = None
) -> int:
    """Run `main` on a new event loop and return its exit code.

    Tasks still pending afterwards are cancelled and given `grace` seconds; async generators
    and the default executor get the same bound. When anything is still running after that,
    the process exits here with `main`'s code instead of hanging.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    code: int | None = None
    stuck = 0
    try:
        code = loop.run_until_complete(main)
    finally:
        try:
            stuck = _finish(loop, grace)
        finally:
            asyncio.set_event_loop(None)
            if not stuck:
                loop.close()
    if stuck:
        err = stderr or sys.stderr
        with contextlib.suppress(OSError, ValueError):
            err.write(f"sluice: {stuck} task(s) still running at exit; left behind\n")
        for stream in (sys.stdout, sys.stderr, err):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code if code is not None else 1)
    return code


def _finish(loop: asyncio.AbstractEventLoop, grace: float) -> int:
    """Cancel what is left and wait at most `grace` for each step; return what did not end."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=grace))
    stuck = sum(1 for task in tasks if not task.done())
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception while shutting down",
                    "exception": task.exception(),
                    "task": task,
                }
            )
    if stuck:
        return stuck
    for step in (loop.shutdown_asyncgens(), loop.shutdown_default_executor()):
        waiter = loop.create_task(step)
        loop.run_until_complete(asyncio.wait({waiter}, timeout=grace))
        if not waiter.done():
            waiter.cancel()
            return 1
    return 0
