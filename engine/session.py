"""Session: one prompt streamed from a backend through a TokenBuffer into a consumer.

Life of a session: wait for a permit from the backend's limiter (`queued`), open the stream,
run producer and consumer side by side (`streaming`, then `draining` once the stream ended
with chunks still buffered), and close the stream on every path. A failure on either side
cancels the other and is kept on the session (`failed`); cancellation ends it as
`cancelled`. Stopping is bounded: a part that ignores its cancel for `grace` seconds is
abandoned and the session fails saying so; a consumer call longer than `consumer_timeout`
fails the session. Nothing a session does can disturb another session.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, cast

from sluice.engine.backends.base import Backend, StreamInfo, describe_error
from sluice.engine.buffer import TokenBuffer
from sluice.engine.chunk import Chunk
from sluice.engine.consumers import Consumer
from sluice.engine.histogram import Histogram, Percentiles
from sluice.engine.limiter import Limiter
from sluice.engine.rates import RateMeter
from sluice.engine.redact import redact
from sluice.engine.snapshot import SessionDetail, SessionSnapshot

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sluice.engine.autotune.signals import SignalLog

__all__ = [
    "SHUTDOWN_GRACE",
    "Abandoned",
    "ConsumerTimeout",
    "Session",
    "SessionFigures",
    "describe_error",
]

TAIL_CHARS = 1200  # characters of processed text the detail view can show
SUMMARY_REFRESH = 0.5  # seconds between recomputing a running session's percentiles
SHUTDOWN_GRACE = 5.0  # seconds a cancelled session's producer, consumer and stream get to stop

# Parts of sessions that ignored their cancel, kept referenced until they end (if ever) so
# they are neither collected mid-flight nor reported as "destroyed while pending".
_ADRIFT: set[asyncio.Task[None]] = set()


_EMPTY_DEQUE_BYTES = sys.getsizeof(collections.deque())


class ConsumerTimeout(Exception):
    """A consumer call ran longer than `[consumer] timeout_s`."""


class Abandoned(Exception):
    """A part of a session did not stop within the grace period after its cancel."""


def _error_detail(source: str, exc: BaseException) -> str:
    """`source: Type: message` in full for the detail screen and the JSON: a builtin type
    spelled as the table spells it (`RuntimeError`), any other with its module, so that
    two errors of one name stay apart; credentials inside URLs hidden."""
    kind = type(exc)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    return redact(f"{source}: {name}: {exc}")


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
        limiter: Limiter,
        consumer: Consumer,
        *,
        maxsize: int,
        batch_max: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
        consumer_timeout: float = 0.0,
        grace: float = SHUTDOWN_GRACE,
        signals: SignalLog | None = None,
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
        self._timeout = consumer_timeout  # seconds one consumer call may take; 0 = no limit
        self._grace = grace  # seconds a part gets to stop after its cancel
        self._call_started: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._overran = False
        self._abandoned = False
        self._consumer_task: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._close_error: Exception | None = None
        self._final: SessionSnapshot | None = None  # a finished session's, once complete
        # Auto-tune's reports (engine/autotune/signals.py): the backend's throttles and
        # timeouts, stamped here, and TTFT from the last request sent.
        self._signals = signals
        self.sent_at: float | None = None
        if signals is not None:
            self.info.listener = self._on_report

    @property
    def finished(self) -> bool:
        """True once done, failed or cancelled."""
        return self.state in ("done", "failed", "cancelled")

    def _on_report(self, kind: str, value: float | None) -> None:
        """A backend's report (StreamInfo.report): `sent` stamps the request, the rest go
        to the signal log stamped with the session's clock."""
        now = self._clock()
        if kind == "sent":
            self.sent_at = now
        elif self._signals is not None:
            self._signals.add(self.backend_name, kind, now, value)

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the session to its end; errors are recorded, cancellation is re-raised."""
        try:
            async with self.limiter:
                self.granted_at = self._clock()
                self.state = "streaming"
                stream = self.backend.stream(self.prompt, self.info)
                error = await self._stream(stream)
            if error is not None:
                self._record_failure(error)
            elif not self._abandoned:
                self.state = "done"
        except asyncio.CancelledError:
            self._finish("cancelled")
            raise
        except Exception as exc:  # the backend failed to open its stream
            self._record_failure(_UpstreamFailed(exc))
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
            if self.ended_at is None:
                self.ended_at = self._clock()
            if self.stream_ended_at is None:
                self.stream_ended_at = self.ended_at
            if self.state not in ("done", "failed", "cancelled"):
                self.state = "done"

    async def _stream(self, stream: AsyncIterator[Chunk]) -> BaseException | None:
        """Producer and consumer side by side until both end or one fails, then stop the
        rest and close the stream; returns the error to record, or None.

        Like a TaskGroup, except that stopping is bounded: a part that has not ended
        `grace` seconds after its cancel (user code that swallows CancelledError) is left
        running, and the session is failed as abandoned so its permit and its place in
        `wait_idle` are freed. Raises CancelledError (after stopping) when cancelled itself.
        """
        loop = asyncio.get_running_loop()
        producer = loop.create_task(self._produce(stream), name=f"{self.id}:producer")
        consumer = loop.create_task(self._consume(), name=f"{self.id}:consumer")
        self._consumer_task = consumer
        wake: asyncio.Future[None] = loop.create_future()
        self._wake = wake

        def on_part_done(task: asyncio.Task[None]) -> None:
            failed = task.cancelled() or task.exception() is not None
            if not wake.done() and (failed or (producer.done() and consumer.done())):
                wake.set_result(None)

        producer.add_done_callback(on_part_done)
        consumer.add_done_callback(on_part_done)
        cancelled = False
        try:
            await wake
        except asyncio.CancelledError:
            cancelled = True
        parts = [producer, consumer]
        for task in parts:
            task.cancel()
        stuck, interrupted = await _wait_bounded(parts, self._grace)
        if producer.done() and not stuck:
            closer = loop.create_task(_close_stream(stream), name=f"{self.id}:close")
            closing, again = await _wait_bounded([closer], self._grace)
            stuck += closing
            interrupted = interrupted or again
            if not closing and closer.exception() is not None:
                self._close_error = _UpstreamFailed(cast(Exception, closer.exception()))
        if stuck:
            self._abandon(stuck)
        if cancelled or interrupted:
            raise asyncio.CancelledError
        return self._outcome(producer, consumer)

    def _outcome(
        self, producer: asyncio.Task[None], consumer: asyncio.Task[None]
    ) -> Exception | None:
        """The error a stopped session records: a consumer timeout first, then the side
        that failed, then a failed stream close."""
        if self._abandoned:
            return None
        if self._overran:
            return ConsumerTimeout(f"consumer call did not return within {self._timeout:g}s")
        for task in (consumer, producer):
            if task.done() and not task.cancelled():
                exc = task.exception()
                if isinstance(exc, Exception):
                    return exc
        return self._close_error

    def _abandon(self, stuck: list[asyncio.Task[None]]) -> None:
        """Fail the session for parts that ignored their cancel; keep them referenced."""
        names = [task.get_name().rpartition(":")[2] for task in stuck]
        source = "consumer" if "consumer" in names else "backend"
        what = f"did not stop within {self._grace:g}s of cancel"
        if self._overran:
            exc: Exception = ConsumerTimeout(
                f"consumer call did not return within {self._timeout:g}s, then {what}; abandoned"
            )
        else:
            exc = Abandoned(what if source == "consumer" else f"the stream {what}")
        self.error_source = source
        self.error = f"{source}: {describe_error(exc)}"
        self.error_detail = _error_detail(source, exc)
        self._finish("failed")
        self._abandoned = True
        for task in stuck:
            _ADRIFT.add(task)
            task.add_done_callback(_forget)

    def _record_failure(self, exc: BaseException) -> None:
        if self._abandoned:
            return
        source = "consumer"
        if isinstance(exc, _UpstreamFailed):
            exc = exc.original
            source = "backend"
        self.error_source = source
        self.error = f"{source}: {describe_error(exc)}"
        self.error_detail = _error_detail(source, exc)
        self._finish("failed")

    def _finish(self, state: str) -> None:
        if self._abandoned:
            return
        self.state = state
        self.ended_at = self._clock()
        # Chunks that were received but will never be processed are lost, and their memory
        # is given back (the table then shows an empty buffer, not a full one).
        self.tokens_lost = self.tokens_in - self.tokens_out
        self.buffer.discard()

    async def _produce(self, stream: AsyncIterator[Chunk]) -> None:
        clock = self._clock
        buffer = self.buffer
        session_id = self.id
        record_itl = self.itl.record
        last = 0.0
        chunk: object = None
        try:
            async for chunk in stream:
                now = clock()
                if self.first_chunk_at is None:
                    if chunk.text:  # ttft counts the first non-empty chunk; empty ones pass
                        self.first_chunk_at = now
                        if self._signals is not None:
                            # From the last request sent; a backend that reports no `sent`
                            # is taken to send as its slot is granted.
                            sent = self.sent_at if self.sent_at is not None else self.granted_at
                            ttft = now - sent if sent is not None else 0.0
                            self._signals.add(self.backend_name, "ttft", now, ttft)
                else:
                    record_itl(now - last)
                last = now
                chunk.received_at = now
                chunk.session_id = session_id
                self.tokens_in += 1
                await buffer.put(chunk)
        except Exception as exc:
            error: Exception = exc
            if chunk is not None and not isinstance(chunk, Chunk):
                # Said here, not checked per chunk: a user's backend that yields text
                # fails on its first one with an AttributeError that would not say why.
                error = TypeError(
                    f"the backend yielded a {type(chunk).__name__}, not a "
                    "sluice.engine.Chunk (wrap text as Chunk(text, index))"
                )
            self.stream_ended_at = clock()
            buffer.fail(_UpstreamFailed(error))
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
        timeout = self._timeout
        task = asyncio.current_task()
        assert task is not None
        while True:
            batch = await buffer.get_batch(self._batch_max())
            if not batch:
                return
            started = clock()
            if timeout:
                self._call_started = started
                if self._watchdog is None:
                    self._arm_watchdog(timeout)
            await consumer.process(batch)
            self._call_started = None
            if self._abandoned:  # it came back after all; the record stays as reported
                raise asyncio.CancelledError
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
            if task.cancelling():
                # The consumer finished a write it could not undo before honouring a cancel
                # (the sqlite consumer does): the batch counts as delivered, then we stop.
                raise asyncio.CancelledError
            if self.state == "streaming" and self.stream_ended_at is not None and buffer.depth:
                self.state = "draining"

    def _arm_watchdog(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(max(delay, 0.0), self._check_call)

    def _check_call(self) -> None:
        """The consumer-timeout watchdog: one timer per session, re-armed only while a call
        runs, so a call costs two attribute writes rather than a timer of its own."""
        self._watchdog = None
        started = self._call_started
        if started is None or self.finished:
            return  # idle: the next call arms it again
        left = started + self._timeout - self._clock()
        if left > 0:
            self._arm_watchdog(left)
            return
        self._overran = True
        if self._consumer_task is not None:
            self._consumer_task.cancel()
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

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

    def slot_wait(self, now: float) -> float | None:
        """Requested to granted; for a session that ended without a slot, requested to its
        end; None while it still waits."""
        if self.granted_at is not None:
            return self.granted_at - self.requested_at
        if self.finished:
            end = self.ended_at if self.ended_at is not None else now
            return end - self.requested_at
        return None

    def ttft(self) -> float | None:
        """Granted to the first non-empty chunk; None until there is one."""
        if self.first_chunk_at is None or self.granted_at is None:
            return None
        return self.first_chunk_at - self.granted_at

    def snapshot(self, now: float | None = None) -> SessionSnapshot:
        """The session's figures now, as a frozen object (for a finished session, the same
        object every time: nothing in it changes any more)."""
        if self._final is not None:
            return self._final
        if now is None:
            now = self._clock()
        # Built field by field rather than through figures(): this runs for every session
        # every second in the app, and the percentiles are looked up once, not twice.
        itl, queue_wait, token_age, consumer_call = self._latency_summaries(now)
        buffer = self.buffer
        info = self.info
        running = not self.finished
        granted = self.granted_at
        ended = self.ended_at
        end = ended if ended is not None else now
        streaming_time = (end - granted) if granted is not None else 0.0
        stall = buffer.stall_seconds
        buffered = buffer.buffered_bytes
        tokens_in = self.tokens_in
        tokens_out = self.tokens_out
        snap = SessionSnapshot(
            id=self.id,
            backend=self.backend_name,
            state=self.state,
            error=self.error,
            attempts=info.attempts,
            slot_wait=self.slot_wait(now),
            ttft=self.ttft(),
            itl=itl,
            queue_wait=queue_wait,
            token_age=token_age,
            consumer_call=consumer_call,
            stall=stall,
            stall_ratio=(stall / streaming_time) if streaming_time > 0 else 0.0,
            depth=buffer.depth,
            maxsize=buffer.maxsize,
            high_water=buffer.high_water,
            buffered_bytes=buffered,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            tokens_lost=self.tokens_lost,
            rate_in=self._rate_in.rate(now, tokens_in) if running else 0.0,
            rate_out=self._rate_out.rate(now, tokens_out) if running else 0.0,
            memory_bytes=buffered + self._bookkeeping,
            elapsed=end - self.requested_at,
            streaming_time=streaming_time,
            input_tokens=info.input_tokens,
            output_tokens=info.output_tokens,
            stop_reason=info.stop_reason,
            cost_usd=info.cost_usd,
            turns=info.turns,
            tool_deltas=info.tool_deltas,
            thinking_deltas=info.thinking_deltas,
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


async def _close_stream(stream: AsyncIterator[Chunk]) -> None:
    """Close a backend's stream; a plain async iterator without `aclose` needs nothing."""
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        await closer()


async def _wait_bounded(
    tasks: list[asyncio.Task[None]], grace: float
) -> tuple[list[asyncio.Task[None]], bool]:
    """Wait up to `grace` seconds for `tasks` to end, even through a second cancel.

    Returns the tasks still running and whether the caller was cancelled meanwhile (the
    caller re-raises that once it has recorded what happened).
    """
    pending = {task for task in tasks if not task.done()}
    interrupted = False
    if pending:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while pending:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                _, pending = await asyncio.wait(pending, timeout=remaining)
            except asyncio.CancelledError:
                interrupted = True
    return [task for task in tasks if not task.done()], interrupted


def _forget(task: asyncio.Task[None]) -> None:
    """An abandoned part ended after all: drop it and mark its outcome as seen."""
    _ADRIFT.discard(task)
    if not task.cancelled():
        task.exception()
