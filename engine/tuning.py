"""Calibration: time the configured consumer, then size `maxsize` and `batch_max` from it.

`measure_consumer` is the only part that reads a clock. Everything else here is pure
arithmetic on its result (`timing_from_durations`, `fit_call_cost`, `recommend`,
`parse_size`), so tests can check the rules exactly. The rules:

- `maxsize = ceil(target_buffer_ms / mean consumer_call ms)`: the buffer holds about
  `target_buffer_ms` of the consumer's work (the original write-up's rule), clamped to the
  `maxsize` knob's range (1 to 1024; 0, unbounded, is never recommended).
- Under a memory ceiling, `sessions x maxsize x bytes_per_chunk` must fit in what the ceiling
  leaves after `reserved_bytes`; the recommendation is lowered to the largest maxsize that does.
- `batch_max = maxsize`: `get_batch` never waits to fill a batch, so a large cap only takes
  effect when a backlog exists, which is exactly when one call for many chunks pays off.
  With a second timing at a larger batch, the call cost is fitted as `a + c x batch` and the
  smallest batch that keeps up with the model's rate is reported beside it.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sluice.engine import settings as S
from sluice.engine.chunk import Chunk
from sluice.engine.consumers import Consumer

__all__ = [
    "Calibration",
    "CallCost",
    "ConsumerTiming",
    "Recommendation",
    "calibrate",
    "calibration_chunks",
    "container_ceiling",
    "fit_call_cost",
    "measure_consumer",
    "parse_size",
    "recommend",
    "timing_from_durations",
]

MAXSIZE_MIN = 1  # 0 means unbounded: never a recommendation
MAXSIZE_MAX = int(S.QUEUE_MAXSIZE.maximum or 0)
BATCH_MIN = int(S.QUEUE_BATCH_MAX.minimum or 1)
BATCH_MAX = int(S.QUEUE_BATCH_MAX.maximum or 1)
KEEP_UP_HEADROOM = 1.25  # the consumer should manage 25% more than the model's rate


@dataclass(frozen=True, slots=True)
class ConsumerTiming:
    """How long a consumer's `process(batch)` took over a calibration run (seconds).

    `batch_size` is the chunks per call; `bytes_per_chunk` is the mean `Chunk.nbytes` of the
    chunks sent, the figure the memory ceiling is divided by.
    """

    batch_size: int
    calls: int
    chunks: int
    mean: float
    p50: float
    p99: float
    max: float
    bytes_per_chunk: int

    @property
    def mean_ms(self) -> float:
        """Mean call time in milliseconds."""
        return self.mean * 1000.0

    @property
    def p99_ms(self) -> float:
        """p99 call time in milliseconds."""
        return self.p99 * 1000.0

    @property
    def chunks_per_second(self) -> float:
        """Chunks one consumer loop gets through per second at this batch size."""
        return self.batch_size / self.mean if self.mean > 0 else math.inf


@dataclass(frozen=True, slots=True)
class CallCost:
    """A consumer call's cost as `fixed + per_chunk x batch` seconds, fitted from two timings."""

    fixed: float
    per_chunk: float

    def keep_up_batch(self, rate: float, headroom: float = KEEP_UP_HEADROOM) -> int | None:
        """The smallest batch whose throughput is at least `headroom x rate` chunks/s, or
        None when no batch is enough (the per-chunk cost alone is too slow)."""
        need = headroom * rate
        if need <= 0:
            return 1
        denominator = 1.0 - need * self.per_chunk
        if denominator <= 0:
            return None
        batch = math.ceil(_tidy(need * self.fixed / denominator))
        return max(1, batch)


@dataclass(frozen=True, slots=True)
class Recommendation:
    """Knob values from a calibration, with the figures behind them.

    `target_maxsize` is `ceil(target_buffer_ms / mean call ms)` before any clamping;
    `clamped` says it fell outside 1..1024; `ceiling_maxsize` is the largest maxsize the
    memory ceiling allows (None without a ceiling) and `limited_by_memory` says it won.
    `buffer_bytes` is `sessions x maxsize x bytes_per_chunk` at the recommendation.
    `keep_up_batch` is the smallest batch that keeps up with `rate` (None when unknown or
    impossible). `notes` are the sentences a user should read.
    """

    maxsize: int
    batch_max: int
    target_buffer_ms: float
    target_maxsize: int | None
    clamped: bool
    memory_ceiling: int | None
    reserved_bytes: int
    ceiling_maxsize: int | None
    limited_by_memory: bool
    fits: bool
    sessions: int
    bytes_per_chunk: int
    buffer_bytes: int
    rate: float | None
    keep_up_batch: int | None
    notes: tuple[str, ...]


def timing_from_durations(
    durations: Sequence[float], *, batch_size: int, bytes_per_chunk: int
) -> ConsumerTiming:
    """Summarise call durations: mean, and nearest-rank p50/p99 (exact, no buckets)."""
    if not durations:
        raise ValueError("no consumer calls were timed")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    ordered = sorted(max(0.0, d) for d in durations)
    n = len(ordered)
    return ConsumerTiming(
        batch_size=batch_size,
        calls=n,
        chunks=n * batch_size,
        mean=math.fsum(ordered) / n,
        p50=_nearest_rank(ordered, 0.50),
        p99=_nearest_rank(ordered, 0.99),
        max=ordered[-1],
        bytes_per_chunk=bytes_per_chunk,
    )


def _nearest_rank(ordered: Sequence[float], q: float) -> float:
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def _tidy(x: float) -> float:
    """Round away float noise (10.000000000000002) before ceil/floor."""
    return round(x, 9)


def fit_call_cost(single: ConsumerTiming, batched: ConsumerTiming) -> CallCost:
    """Fit `fixed + per_chunk x batch` through two timings at different batch sizes.

    Negative parts (noise) are clamped to zero: a call never costs less than nothing.
    """
    if single.batch_size == batched.batch_size:
        raise ValueError("the two timings need different batch sizes")
    per_chunk = (batched.mean - single.mean) / (batched.batch_size - single.batch_size)
    per_chunk = max(0.0, per_chunk)
    fixed = max(0.0, single.mean - per_chunk * single.batch_size)
    return CallCost(fixed=fixed, per_chunk=per_chunk)


def recommend(
    timing: ConsumerTiming,
    *,
    sessions: int,
    target_buffer_ms: float = 500.0,
    memory_ceiling: int | None = None,
    reserved_bytes: int = 0,
    batched: ConsumerTiming | None = None,
    rate: float | None = None,
) -> Recommendation:
    """Recommend `maxsize` and `batch_max` from a one-chunk-per-call `timing`.

    `sessions` is how many sessions can stream (and so hold a full buffer) at once.
    `memory_ceiling` (bytes) caps `sessions x maxsize x bytes_per_chunk` after setting aside
    `reserved_bytes` for the rest of the process. With `batched` (a timing at a larger batch)
    and `rate` (the model's chunks/s per session) the smallest batch that keeps up is
    reported too. Pure: the same inputs always give the same answer.
    """
    if sessions < 1:
        raise ValueError(f"sessions must be >= 1, got {sessions!r}")
    if not (target_buffer_ms > 0 and math.isfinite(target_buffer_ms)):
        raise ValueError(f"target_buffer_ms must be a number > 0, got {target_buffer_ms!r}")
    if memory_ceiling is not None and memory_ceiling < 1:
        raise ValueError(f"memory_ceiling must be > 0 bytes, got {memory_ceiling!r}")
    notes: list[str] = []
    if timing.batch_size != 1:
        notes.append(
            f"the timing used {timing.batch_size} chunks per call; the maxsize rule assumes one"
        )
    bytes_per_chunk = max(1, timing.bytes_per_chunk)

    target: int | None
    if timing.mean_ms > 0:
        target = math.ceil(_tidy(target_buffer_ms / timing.mean_ms))
        maxsize = min(MAXSIZE_MAX, max(MAXSIZE_MIN, target))
        clamped = maxsize != target
        if clamped:
            notes.append(
                f"ceil({target_buffer_ms:g} / {timing.mean_ms:.3g} ms) = {target} is outside "
                f"the maxsize range {MAXSIZE_MIN}..{MAXSIZE_MAX}; clamped to {maxsize}"
            )
    else:
        target = None
        maxsize = MAXSIZE_MAX
        clamped = True
        notes.append(f"the consumer took no measurable time; maxsize set to the top, {maxsize}")

    ceiling_maxsize: int | None = None
    limited = False
    fits = True
    if memory_ceiling is not None:
        budget = memory_ceiling - reserved_bytes
        ceiling_maxsize = max(0, math.floor(_tidy(budget / (sessions * bytes_per_chunk))))
        if ceiling_maxsize < MAXSIZE_MIN:
            fits = False
            limited = True
            maxsize = MAXSIZE_MIN
            notes.append(
                f"the memory ceiling leaves {max(0, budget)} bytes for buffers, less than one "
                f"chunk per session ({sessions} x {bytes_per_chunk} bytes); "
                "maxsize 1 is the least that works: lower the session limits or raise the ceiling"
            )
        elif ceiling_maxsize < maxsize:
            limited = True
            maxsize = ceiling_maxsize
            notes.append(
                f"lowered to {maxsize} so {sessions} sessions x maxsize x {bytes_per_chunk} "
                f"bytes per chunk stay under the memory ceiling"
            )

    batch_max = min(BATCH_MAX, max(BATCH_MIN, maxsize))
    keep_up: int | None = None
    if batched is not None and rate is not None and rate > 0:
        cost = fit_call_cost(timing, batched)
        keep_up = cost.keep_up_batch(rate)
        if keep_up is None:
            notes.append(
                f"even batched the consumer cannot keep up with {rate:g} chunks/s per session: "
                f"each chunk alone costs {cost.per_chunk * 1000:.3g} ms; expect stalls"
            )
        elif keep_up > batch_max:
            notes.append(
                f"keeping up with {rate:g} chunks/s needs batches of {keep_up}, more than "
                f"maxsize {maxsize} allows; expect stalls (or raise maxsize)"
            )

    return Recommendation(
        maxsize=maxsize,
        batch_max=batch_max,
        target_buffer_ms=float(target_buffer_ms),
        target_maxsize=target,
        clamped=clamped,
        memory_ceiling=memory_ceiling,
        reserved_bytes=reserved_bytes,
        ceiling_maxsize=ceiling_maxsize,
        limited_by_memory=limited,
        fits=fits,
        sessions=sessions,
        bytes_per_chunk=bytes_per_chunk,
        buffer_bytes=sessions * maxsize * bytes_per_chunk,
        rate=rate,
        keep_up_batch=keep_up,
        notes=tuple(notes),
    )


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from a size like `512M`, `2G`, `1.5GiB` or `1048576` (K/M/G/T are powers of
    1024, as cgroups and container runtimes count). Raises ValueError naming what is allowed."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not a size: use a number of bytes or one with K, M, G or T "
            "(powers of 1024), like 512M or 2G"
        )
    value = float(match[1]) * _UNITS[match[2].lower()]
    if value < 1:
        raise ValueError(f"{text!r}: a size must be at least 1 byte")
    return int(value)


_WORDS = ("the", "buffer", "keeps", "memory", "flat", "while", "slow", "consumer", "works")


def calibration_chunks(count: int, *, session_id: str = "calibrate") -> list[Chunk]:
    """`count` chunks shaped like a model's text deltas (text plus event metadata)."""
    chunks = []
    for index in range(count):
        word = _WORDS[index % len(_WORDS)]
        meta = {
            "type": "content_block_delta",
            "index": 0,
            "delta_type": "text_delta",
            "message_id": "msg_calibrate_000000",
            "model": "sluice-calibrate",
        }
        chunk = Chunk(word if index == 0 else " " + word, index, meta)
        chunk.session_id = session_id
        chunks.append(chunk)
    return chunks


async def measure_consumer(
    consumer: Consumer,
    *,
    chunks: int = 50,
    batch_max: int = 1,
    min_calls: int = 8,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> ConsumerTiming:
    """Time `consumer.process` on calibration chunks, `batch_max` chunks per call.

    Makes enough calls to send at least `chunks` chunks (and at least `min_calls` calls),
    after `warmup` untimed calls (a first call that opens a file or a connection is not
    typical). Errors from the consumer propagate.
    """
    if chunks < 1 or batch_max < 1 or min_calls < 1 or warmup < 0:
        raise ValueError("chunks, batch_max and min_calls must be >= 1, warmup >= 0")
    calls = max(math.ceil(chunks / batch_max), min_calls)
    pool = calibration_chunks((calls + warmup) * batch_max)
    batches = [pool[i : i + batch_max] for i in range(0, len(pool), batch_max)]
    for batch in batches[:warmup]:
        await consumer.process(batch)
    durations = []
    for batch in batches[warmup:]:
        started = clock()
        await consumer.process(batch)
        durations.append(clock() - started)
    sent = [c for batch in batches[warmup:] for c in batch]
    bytes_per_chunk = round(sum(c.nbytes for c in sent) / len(sent))
    return timing_from_durations(durations, batch_size=batch_max, bytes_per_chunk=bytes_per_chunk)


@dataclass(frozen=True, slots=True)
class Calibration:
    """A whole calibration: the one-chunk timing, the batched timing, the recommendation."""

    single: ConsumerTiming
    batched: ConsumerTiming
    recommendation: Recommendation


def container_ceiling() -> tuple[int | None, int]:
    """(the container's cgroup memory limit or None, this process's RSS now): the ceiling a
    calibration uses when none is given, and what the rest of the process already takes."""
    import psutil

    from sluice.engine.cgroup import memory_limit

    limit = memory_limit()
    if limit is None:
        return None, 0
    return limit, int(psutil.Process().memory_info().rss)


async def calibrate(
    consumer: Consumer,
    *,
    sessions: int,
    target_buffer_ms: float = 500.0,
    memory_ceiling: int | None = None,
    reserved_bytes: int = 0,
    rate: float | None = None,
    chunks: int = 50,
    batch: int = 16,
) -> Calibration:
    """Time `consumer` one chunk per call (`chunks` of them) and `batch` per call, then
    recommend. What `sluice calibrate` and the app's calibrate action both run; pass
    `container_ceiling()` as the ceiling and reserve to follow the container's limit."""
    single = await measure_consumer(consumer, chunks=chunks, batch_max=1)
    batched = await measure_consumer(consumer, chunks=chunks, batch_max=batch)
    rec = recommend(
        single,
        sessions=sessions,
        target_buffer_ms=target_buffer_ms,
        memory_ceiling=memory_ceiling,
        reserved_bytes=reserved_bytes,
        batched=batched,
        rate=rate,
    )
    return Calibration(single=single, batched=batched, recommendation=rec)
