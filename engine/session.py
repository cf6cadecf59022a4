"""Session: one prompt streamed from a backend through a TokenBuffer into a consumer.

Life of a session: wait for a permit from the backend's limiter (`queued`), open the stream,
run producer and consumer in one TaskGroup (`streaming`, then `draining` once the stream
ended with chunks still buffered), and close the stream on every path. A failure on either
side cancels the other and is kept on the session (`failed`); cancellation ends it as
`cancelled`. Nothing a session does can disturb another session.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, cast

from sluice.engine.backends.base import Backend, StreamInfo, describe_error
from sluice.engine.buffer import TokenBuffer
from sluice.engine.chunk import Chunk
from sluice.engine.consumers import Consumer
from sluice.engine.histogram import Histogram, Percentiles
from sluice.engine.limiter import AdjustableLimiter
from sluice.engine.rates import RateMeter
from sluice.engine.snapshot import SessionDetail, SessionSnapshot

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

__all__ = ["Session", "SessionFigures", "describe_error"]

TAIL_CHARS = 1200  # characters of processed text the detail view can show
SUMMARY_REFRESH = 0.5  # seconds between recomputing a running session's percentiles


_EMPTY_DEQUE_BYTES = sys.getsizeof(collections.deque())


class SessionFigures(NamedTuple):
    """The part of a session's snapshot that the engine's totals add up: a few numbers,
    about a fifth of the cost of a whole snapshot."""

    state: str
    tokens_in: int
    tokens_out: int
    tokens_lost: int
    rate_in: float
    rate_out: float
    depth: int
    buffered_bytes: int
    memory_bytes: int
    stall: float
    high_water: int


class _UpstreamFailed(Exception):
    """Carries a backend error through the buffer so the consumer drains first."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


class Session:
    """A single streaming session and its metrics; run it with `await session.run()`."""

    def __init__(
        self,
        session_id: str,
        prompt: str,
        backend: Backend,
        limiter: AdjustableLimiter,
        consumer: Consumer,
        *,
        maxsize: int,
        batch_max: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = session_id
        self.prompt = prompt
        self.backend = backend
        self.backend_name: str = backend.name
        self.limiter = limiter
        self.consumer = consumer
        self.buffer: TokenBuffer[Chunk] = TokenBuffer(maxsize, clock=clock)
        self.info = StreamInfo()
        self.state = "queued"
        self.error: str | None = None
        self.error_detail: str | None = None
        self.error_source: str | None = None
        self._batch_max = batch_max
        self._clock = clock
        self.requested_at = clock()
        self.granted_at: float | None = None
        self.first_chunk_at: float | None = None
        self.stream_ended_at: float | None = None
        self.ended_at: float | None = None
        self.tokens_in = 0
        self.tokens_out = 0
        self.tokens_lost = 0
        self.itl = Histogram()
        self.queue_wait = Histogram()
        self.token_age = Histogram()
        self.consumer_call = Histogram()
        self.tail = ""  # at least the last TAIL_CHARS characters processed (at most twice that)
        self._rate_in = RateMeter()
        self._rate_out = RateMeter()
        self._summary_at = -1.0e18
        self._summaries: tuple[Percentiles, Percentiles, Percentiles, Percentiles] | None = None
        self._bookkeeping = 0
        self._final: SessionSnapshot | None = None  # a finished session's, once complete

    @property
    def finished(self) -> bool:
        """True once done, failed or cancelled."""
        return self.state in ("done", "failed", "cancelled")

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the session to its end; errors are recorded, cancellation is re-raised."""
        try:
            async with self.limiter:
                self.granted_at = self._clock()
                self.state = "streaming"
                stream = self.backend.stream(self.prompt, self.info)
                closer = (
                    contextlib.aclosing(cast("AsyncGenerator[Chunk, None]", stream))
                    if hasattr(stream, "aclose")
                    else _no_close(stream)
                )
                async with closer:
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._produce(stream), name=f"{self.id}:producer")
                        group.create_task(self._consume(), name=f"{self.id}:consumer")
            self.state = "done"
        except asyncio.CancelledError:
            self._finish("cancelled")
            raise
        except BaseExceptionGroup as group:
            self._record_failure(_first_error(group))
        except Exception as exc:  # the backend failed to open, or closing the stream failed
            self._record_failure(_UpstreamFailed(exc))
        finally:
            if self.ended_at is None:
                self.ended_at = self._clock()
            if self.stream_ended_at is None:
                self.stream_ended_at = self.ended_at
            if self.state not in ("done", "failed", "cancelled"):
                self.state = "done"

    def _record_failure(self, exc: BaseException) -> None:
        source = "consumer"
        if isinstance(exc, _UpstreamFailed):
            exc = exc.original
            source = "backend"
        self.error_source = source
        self.error = f"{source}: {describe_error(exc)}"
        self.error_detail = f"{source}: {type(exc).__module__}.{type(exc).__name__}: {exc}"
        self._finish("failed")

    def _finish(self, state: str) -> None:
        self.state = state
        self.ended_at = self._clock()
        # Chunks that were received but will never be processed are lost.
        self.tokens_lost = self.tokens_in - self.tokens_out
        self.buffer.close()

    async def _produce(self, stream: AsyncIterator[Chunk]) -> None:
        clock = self._clock
        buffer = self.buffer
        session_id = self.id
        record_itl = self.itl.record
        last = 0.0
        try:
            async for chunk in stream:
                now = clock()
                if self.first_chunk_at is None:
                    if chunk.text:  # ttft counts the first non-empty chunk; empty ones pass
                        self.first_chunk_at = now
                else:
                    record_itl(now - last)
                last = now
                chunk.received_at = now
                chunk.session_id = session_id
                self.tokens_in += 1
                await buffer.put(chunk)
        except Exception as exc:
            self.stream_ended_at = clock()
            buffer.fail(_UpstreamFailed(exc))
            return
        self.stream_ended_at = clock()
        if buffer.depth and self.state == "streaming":
            self.state = "draining"
        buffer.close()

    async def _consume(self) -> None:
        clock = self._clock
        buffer = self.buffer
        consumer = self.consumer
        record_call = self.consumer_call.record
        record_wait = self.queue_wait.record
        record_age = self.token_age.record
        while True:
            batch = await buffer.get_batch(self._batch_max())
            if not batch:
                return
            started = clock()
            await consumer.process(batch)
            done = clock()
            record_call(done - started)
            for chunk in batch:
                record_wait(done - chunk.received_at)
                generated = chunk.generated_at
                if generated is not None:
                    record_age(done - generated)
            text = batch[0].text if len(batch) == 1 else "".join([c.text for c in batch])
            tail = self.tail + text
            # Trim only when twice the size: one copy per TAIL_CHARS characters, not per chunk.
            self.tail = tail[-TAIL_CHARS:] if len(tail) > 2 * TAIL_CHARS else tail
            self.tokens_out += len(batch)
            if self.state == "streaming" and self.stream_ended_at is not None and buffer.depth:
                self.state = "draining"

    # -- views -----------------------------------------------------------------------------

    def _latency_summaries(
        self, now: float
    ) -> tuple[Percentiles, Percentiles, Percentiles, Percentiles]:
        """Percentiles, recomputed at most every SUMMARY_REFRESH seconds while running."""
        cached = self._summaries
        if cached is not None:
            if self.finished:
                if self._summary_at >= (self.ended_at or 0.0):
                    return cached
            elif now - self._summary_at < SUMMARY_REFRESH:
                return cached
        summaries = (
            self.itl.summary(),
            self.queue_wait.summary(),
            self.token_age.summary(),
            self.consumer_call.summary(),
        )
        self._summaries = summaries
        self._summary_at = now
        self._bookkeeping = self._bookkeeping_bytes()
        return summaries

    def _bookkeeping_bytes(self) -> int:
        """Bytes the session's own records hold, not counting the buffered chunks."""
        size = sys.getsizeof(self) + sys.getsizeof(self.__dict__)
        for hist in (self.itl, self.queue_wait, self.token_age, self.consumer_call):
            size += sys.getsizeof(hist) + sys.getsizeof(hist._counts)
        size += sys.getsizeof(self.tail)
        size += sys.getsizeof(self.buffer) + sys.getsizeof(self.buffer.__dict__)
        size += 2 * _EMPTY_DEQUE_BYTES  # the buffer's item and size queues
        size += self._rate_in.nbytes() + self._rate_out.nbytes()
        size += sys.getsizeof(self.info) + sys.getsizeof(self.prompt)
        return size

    def figures(self, now: float) -> SessionFigures:
        """The countable figures now (what totals sum), without building a snapshot."""
        self._latency_summaries(now)  # keeps the bookkeeping part of memory_bytes fresh
        buffer = self.buffer
        running = not self.finished
        return SessionFigures(
            self.state,
            self.tokens_in,
            self.tokens_out,
            self.tokens_lost,
            self._rate_in.rate(now, self.tokens_in) if running else 0.0,
            self._rate_out.rate(now, self.tokens_out) if running else 0.0,
            buffer.depth,
            buffer.buffered_bytes,
            buffer.buffered_bytes + self._bookkeeping,
            buffer.stall_seconds,
            buffer.high_water,
        )

    def snapshot(self, now: float | None = None) -> SessionSnapshot:
        """The session's figures now, as a frozen object (for a finished session, the same
        object every time: nothing in it changes any more)."""
        if self._final is not None:
            return self._final
        if now is None:
            now = self._clock()
        itl, queue_wait, token_age, consumer_call = self._latency_summaries(now)
        counts = self.figures(now)
        buffer = self.buffer
        granted = self.granted_at
        end = self.ended_at if self.ended_at is not None else now
        slot_wait = (granted if granted is not None else end) - self.requested_at
        streaming_time = (end - granted) if granted is not None else 0.0
        stall = counts.stall
        running = not self.finished
        snap = SessionSnapshot(
            id=self.id,
            backend=self.backend_name,
            state=counts.state,
            error=self.error,
            attempts=self.info.attempts,
            slot_wait=slot_wait if granted is not None or not running else None,
            ttft=(self.first_chunk_at - granted)
            if (self.first_chunk_at is not None and granted is not None)
            else None,
            itl=itl,
            queue_wait=queue_wait,
            token_age=token_age,
            consumer_call=consumer_call,
            stall=stall,
            stall_ratio=(stall / streaming_time) if streaming_time > 0 else 0.0,
            depth=counts.depth,
            maxsize=buffer.maxsize,
            high_water=counts.high_water,
            buffered_bytes=counts.buffered_bytes,
            tokens_in=counts.tokens_in,
            tokens_out=counts.tokens_out,
            tokens_lost=counts.tokens_lost,
            rate_in=counts.rate_in,
            rate_out=counts.rate_out,
            memory_bytes=counts.memory_bytes,
            elapsed=end - self.requested_at,
            streaming_time=streaming_time,
            input_tokens=self.info.input_tokens,
            output_tokens=self.info.output_tokens,
        )
        if not running and self.ended_at is not None and self._summary_at >= self.ended_at:
            self._final = snap  # its percentiles and memory are final too
        return snap

    def detail(self) -> SessionDetail:
        """The snapshot plus the prompt, the tail of processed text and the full error."""
        return SessionDetail(
            snapshot=self.snapshot(),
            prompt=self.prompt,
            tail=self.tail[-TAIL_CHARS:],
            error_detail=self.error_detail,
            stop_reason=self.info.stop_reason,
            model=self.info.model,
        )


@contextlib.asynccontextmanager
async def _no_close(stream: AsyncIterator[Chunk]) -> AsyncIterator[AsyncIterator[Chunk]]:
    """For a backend's plain async iterator that has no `aclose` to call."""
    yield stream


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The first real error in a (possibly nested) exception group."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]
