"""A paced loopback server speaking Anthropic's Messages SSE that counts concurrent streams,
for the cluster benchmark: the upstream every node shares, so `peak` is what an API would see.

`Upstream` runs in the benchmark's own event loop (aiohttp). Each answer is `deltas` text
deltas, one every `pace` seconds; `gate` holds answers until the benchmark opens it.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from sluice.bench.anthropic_sse import answer_pieces

__all__ = ["Upstream"]


class Upstream:
    """POST /v1/messages streams a paced answer; counts streams now, the peak, chunks sent."""

    def __init__(self, deltas: int, pace: float) -> None:
        self.deltas = deltas
        self.pace = pace
        self.now = 0
        self.peak = 0
        self.chunks = 0
        self.streams = 0
        self.gate = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Upstream:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        """Stop listening; streams in flight are cut."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def reset_peak(self) -> None:
        """Start counting the peak again from the streams open now."""
        self.peak = self.now

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        await self.gate.wait()
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        self.now += 1
        self.streams += 1
        self.peak = max(self.peak, self.now)
        try:
            head, delta, tail = answer_pieces(str(body.get("model", "bench")), self.deltas, " tok")
            await response.write(head)
            for _ in range(self.deltas):
                await asyncio.sleep(self.pace)
                await response.write(delta)
                self.chunks += 1
            await response.write(tail)
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass  # a node stopped (or was killed) mid-answer
        finally:
            self.now -= 1
        return response
