"""A loopback TCP server on its own event loop in a background thread.

The loopback servers that stand in for Anthropic and Ollama (the benchmarks' and the tests')
must keep serving while the code under test blocks or saturates its own loop, so each runs
its loop in a thread. This is their shared lifecycle; subclasses implement `_serve`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Self

__all__ = ["ThreadedServer"]


class ThreadedServer:
    """Listens on 127.0.0.1 (a free port) and runs `_serve` per connection in its thread;
    `stop` cancels every handler still running (each adds itself to `_handlers`)."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        """Listen on a free loopback port and serve from the background thread."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Cancel every handler, close the listener and end the thread."""
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
