"""The header lines and the detail summary: figures left out whole on a narrow screen, and
chunks a cancel dropped shown apart from real loss."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.text import Text

from sluice.engine import Chunk, Engine
from sluice.engine.backends.base import StreamInfo
from sluice.engine.config import Config
from sluice.engine.histogram import Percentiles
from sluice.engine.snapshot import (
    BackendSnapshot,
    ClusterSnapshot,
    EngineSnapshot,
    SessionDetail,
    SharedCap,
)
from sluice.tui.app import SluiceApp
from sluice.tui.detail import render_summary
from sluice.tui.panels import ProcessBar
from sluice.tui.readout import MORE, Fitted, Part, Readout
from sluice.tui.source import FrozenSource

from . import frozen
from .helpers import screen_text

PARTS = st.lists(st.tuples(st.integers(0, 9), st.integers(1, 8)), max_size=20)


@given(spec=PARTS, width=st.integers(0, 80))
def test_fitted_keeps_whole_parts_in_order_dropping_the_least_important(
    spec: list[tuple[int, int]], width: int
) -> None:
    parts = [(prio, chr(ord("A") + i) * size) for i, (prio, size) in enumerate(spec)]
    line = Fitted([(prio, Text(text)) for prio, text in parts]).fit(width).plain
    kept = [(prio, text) for prio, text in parts if text[0] in line]
    dropped = [(prio, text) for prio, text in parts if text[0] not in line]
    assert line == "".join(text for _, text in kept)  # whole parts, in their order
    assert all(prio for prio, _ in dropped)  # priority 0 always stays
    must = sum(len(text) for prio, text in parts if prio == 0)
    assert len(line) <= max(width, must)
    if dropped:  # only parts less important than (or as important as) every kept one
        assert min(prio for prio, _ in dropped) >= max((p for p, _ in kept if p), default=0)


def test_fitted_shortens_first_then_leaves_out_with_a_sign_but_decor_silently() -> None:
    parts = [
        Part(0, Text("RSS 1G")),
        Part(9, Text(" Sluice"), named=False),
        Part(4, Text(" lag p99 10s 3ms"), short=Text(" p99 10s 3ms")),
        Part(5, Text(" 7 done")),
    ]
    line = Fitted(parts)
    assert line.fit(80).plain == "RSS 1G Sluice lag p99 10s 3ms 7 done"
    assert line.fit(29).plain == "RSS 1G lag p99 10s 3ms 7 done"  # decor went silently
    assert line.fit(25).plain == "RSS 1G p99 10s 3ms 7 done"  # then the short form
    assert line.fit(24).plain == "RSS 1G p99 10s 3ms" + MORE  # a figure gone: the sign
    assert line.fit(6).plain.startswith("RSS 1G")  # priority 0 stays


# Every figure of the header the README names, as the header spells it (long or short).
NAMED = (
    "RSS ",
    "CPU ",
    "lag ",
    "p99 10s ",
    "sess",
    "streaming",
    "draining",
    "queued",
    "done",
    "failed",
    "cancelled",
    "in ",
    "out ",
    "lost ",
    "by cancel",
    "claude ",
    "ollama ",
    "demo ",
    "waiting",
)


def busy_snapshot() -> EngineSnapshot:
    """Every state, every backend busy and waiting, chunks dropped by a cancel."""
    snap = frozen.snapshot(3)
    states = {
        "streaming": 64,
        "draining": 3,
        "queued": 900,
        "done": 30,
        "failed": 1,
        "cancelled": 2,
    }
    totals = dataclasses.replace(
        snap.totals, sessions=1000, states=states, tokens_lost=45, tokens_lost_cancelled=45
    )
    backends = tuple(
        BackendSnapshot(name, limit=4, in_use=4, waiting=12)
        for name in ("claude", "ollama", "demo")
    )
    return dataclasses.replace(snap, totals=totals, backends=backends)


@pytest.mark.parametrize("width", [60, 80, 120, 160, 200])
async def test_the_header_shows_each_named_figure_or_says_some_are_left_out(width: int) -> None:
    snap = busy_snapshot()
    app = SluiceApp(
        config=Config(),
        engine=Engine(Config()),
        source=FrozenSource([snap]),
        continuous=False,
        live=False,
    )
    async with app.run_test(size=(width, 40)) as pilot:
        app.refresh_now()
        await pilot.pause()
        header = screen_text(app).splitlines()[:3]
        for line in header:
            assert len(line.rstrip()) <= width
        expected = [
            [n for n in NAMED[:4] if n != "p99 10s "],
            ["sess", *NAMED[5:15]],
            list(NAMED[15:]),
        ]
        for line, names in zip(header, expected, strict=True):
            missing = [n for n in names if n not in line]
            assert not missing or line.rstrip().endswith(MORE), (missing, line)
        if width >= 160:  # room for all: nothing left out, no sign
            assert not any(line.rstrip().endswith("…") for line in header), header
        await pilot.press("q")


async def test_the_shipped_screen_at_80_columns_leaves_no_figure_out() -> None:
    app = SluiceApp(
        config=Config(),
        engine=Engine(Config()),
        source=FrozenSource([frozen.snapshot(3)]),
        continuous=False,
        live=False,
    )
    async with app.run_test(size=(80, 24)) as pilot:
        app.refresh_now()
        await pilot.pause()
        header = "\n".join(screen_text(app).splitlines()[:3])
        assert "…" not in header, header
        for name in (
            "RSS ",
            "CPU ",
            "lag ",
            "lag p99 10s ",
            "sessions:",
            "streaming",
            "queued",
            "in ",
            "out ",
            "lost ",
            "claude ",
            "ollama ",
            "demo ",
        ):
            assert name in header, (name, header)
        await pilot.press("q")


def styles_of(text: Text, needle: str) -> list[str]:
    """Styles of the spans under the first character of the first `needle` in `text`."""
    at = text.plain.index(needle)
    return [str(span.style) for span in text.spans if span.start <= at < span.end]


async def test_chunks_dropped_by_a_cancel_are_not_shown_as_loss() -> None:
    snap = frozen.snapshot(3)
    totals = dataclasses.replace(snap.totals, tokens_lost=30, tokens_lost_cancelled=30)
    cancelled = frozen.snapshot(3, sessions=1)
    app = SluiceApp(
        config=Config(),
        engine=Engine(Config()),
        source=FrozenSource([dataclasses.replace(snap, totals=totals)]),
        continuous=False,
        live=False,
    )
    async with app.run_test(size=(120, 40)) as pilot:
        app.refresh_now()
        await pilot.pause()
        plain = app.query_one("#process", Readout).plain
        assert "lost 0 (+30 dropped by cancel)" in plain
        line = ProcessBar._sessions_line(dataclasses.replace(snap, totals=totals))
        lost = next(part.text for part in line if "lost" in part.text.plain)
        assert "bold green" in styles_of(lost, "0")
        totals = dataclasses.replace(totals, tokens_lost=42)  # 12 lost by a fault
        line = ProcessBar._sessions_line(dataclasses.replace(snap, totals=totals))
        lost = next(part.text for part in line if "lost" in part.text.plain)
        assert lost.plain == "  lost 12" and "bold red" in styles_of(lost, "12")
        await pilot.press("q")
    s = dataclasses.replace(cancelled.sessions[0], state="cancelled", tokens_lost=5)
    summary = render_summary(SessionDetail(s, "p", "", None, None, None))
    assert "lost 5 (cancelled)" in summary.plain
    assert not any("red" in style for style in styles_of(summary, "5 (cancelled)"))
    failed = dataclasses.replace(s, state="failed")
    summary = render_summary(SessionDetail(failed, "p", "", None, None, None))
    assert "lost 5  rate" in summary.plain
    assert "bold red" in styles_of(summary, "5  rate")


class Holding:
    """Streams five chunks at once, says so, then holds the stream open until cancelled."""

    name = "holding"

    def __init__(self) -> None:
        self.sent = asyncio.Semaphore(0)

    async def stream(self, prompt: str, info: StreamInfo) -> AsyncIterator[Chunk]:
        for i in range(5):
            yield Chunk("x", i)
        self.sent.release()
        await asyncio.Event().wait()


class Stuck:
    """A consumer whose first call never returns: every chunk after it stays unprocessed."""

    async def process(self, batch: Sequence[Chunk]) -> None:
        await asyncio.Event().wait()


async def test_the_engine_counts_what_cancelled_sessions_dropped_even_once_retired() -> None:
    backend = Holding()
    config = Config().with_values({"queue.maxsize": 8})
    async with Engine(config, consumer=Stuck(), history=1) as engine:
        for _ in range(3):
            engine.add_session("p", backend)
        for _ in range(3):
            await backend.sent.acquire()
        for session_id in list(engine.sessions):
            engine.cancel(session_id)
        await engine.wait_idle()
        totals = engine.snapshot().totals
        assert len(engine.sessions) == 1  # two folded into the totals
        assert totals.tokens_lost == 15
        assert totals.tokens_lost_cancelled == 15


def test_the_detail_marks_a_cut_or_refused_answer() -> None:
    s = frozen.session(1, 0)
    for reason, note, style in (
        ("max_tokens", "stop max_tokens: answer truncated", "bold yellow"),
        ("refusal", "stop refusal: answer refused", "bold red"),
    ):
        summary = render_summary(SessionDetail(s, "p", "", None, reason, "m"))
        assert note in summary.plain
        assert style in styles_of(summary, reason)
    summary = render_summary(SessionDetail(s, "p", "", None, "end_turn", "m"))
    assert "stop end_turn" in summary.plain
    assert "answer" not in summary.plain.split("prompt")[0]


async def test_the_header_shows_the_cluster_and_a_lost_redis_in_red() -> None:
    snap = frozen.snapshot(3)
    cluster = ClusterSnapshot(
        name="prod",
        node="web-1",
        redis="redis://***@redis:6379/0",
        connected=True,
        disconnected_since=None,
        nodes=3,
        lease_s=10.0,
        shared=(SharedCap("claude", 4, 4, 9, 1, 3),),
        grant_latency=Percentiles.empty(),
    )
    since = time.mktime((2026, 1, 1, 12, 3, 4, 0, 0, -1))
    down = dataclasses.replace(
        cluster, connected=False, disconnected_since=since, error="ConnectionError: refused"
    )
    app = SluiceApp(
        config=Config(),
        engine=Engine(Config()),
        source=FrozenSource([dataclasses.replace(snap, cluster=cluster)]),
        continuous=False,
        live=False,
    )
    async with app.run_test(size=(160, 40)) as pilot:
        app.refresh_now()
        await pilot.pause()
        assert "cluster prod: 3 nodes" in app.query_one("#process", Readout).plain
        assert "cluster 4/4 across 3 nodes" in app.query_one("#backends", Readout).plain
        parts = ProcessBar._cluster_parts(dataclasses.replace(snap, cluster=down))
        assert [(part.prio, part.text.plain) for part in parts] == [
            (0, "  cluster: disconnected since 12:03:04")
        ]
        assert str(parts[0].text.style) == "bold red"
        assert ProcessBar._cluster_parts(snap) == []  # standalone: nothing
        starting = dataclasses.replace(down, error=None)  # the first attempt under way
        (part,) = ProcessBar._cluster_parts(dataclasses.replace(snap, cluster=starting))
        assert part.text.plain == "  cluster: connecting"
        await pilot.press("q")


async def test_a_cluster_of_one_node_is_not_called_nodes() -> None:
    snap = frozen.snapshot(3)
    alone = ClusterSnapshot(
        name="prod",
        node="web-1",
        redis="redis://redis:6379/0",
        connected=True,
        disconnected_since=None,
        nodes=1,
        lease_s=10.0,
        shared=(SharedCap("claude", 4, 2, 0, 2, 0),),
        grant_latency=Percentiles.empty(),
    )
    app = SluiceApp(
        config=Config(),
        engine=Engine(Config()),
        source=FrozenSource([dataclasses.replace(snap, cluster=alone)]),
        continuous=False,
        live=False,
    )
    async with app.run_test(size=(160, 40)) as pilot:
        app.refresh_now()
        await pilot.pause()
        line = app.query_one("#backends", Readout).plain
        assert "cluster 2/4 across 1 node" in line and "1 nodes" not in line
        await pilot.press("q")
