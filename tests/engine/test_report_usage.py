"""The headless summary's usage line: what the backends said the run used (tokens; the
agent sessions' cost), summed over the sessions that said it, and absent when none did."""

from __future__ import annotations

from dataclasses import replace

from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.engine.histogram import Percentiles
from sluice.engine.report import summary_table
from sluice.engine.snapshot import SessionSnapshot


def _session(sid: str, **told: object) -> SessionSnapshot:
    empty = Percentiles.empty()
    base = SessionSnapshot(
        sid, "agent", "done", None, 1, 0.0, 0.1, empty, empty, empty, empty,
        0.0, 0.0, 1, 16, 2, 10, 10, 0, 0, 0.0, 0.0, 100, 1.0, 1.0, None, None,
    )  # fmt: skip
    return replace(base, **told)  # type: ignore[arg-type]


def _table(*sessions: SessionSnapshot) -> str:
    snap = Engine(Config()).snapshot()
    return summary_table(replace(snap, sessions=sessions))


def test_usage_and_the_agents_cost_are_summed_over_the_sessions_that_told_them() -> None:
    text = _table(
        _session("a-1", input_tokens=100, output_tokens=40, cost_usd=0.0125),
        _session("a-2", input_tokens=50, output_tokens=10, cost_usd=0.0100),
        _session("a-3"),  # ended before its result: nothing told
    )
    line = text.splitlines()[-1]
    assert line == (
        "model usage: in 150 / out 50 tokens (2 sessions reported); "
        "cost $0.0225 (2 agent sessions, as the CLI reckoned it)"
    )


def test_no_usage_line_when_no_backend_reported_any() -> None:
    assert "model usage" not in _table(_session("x"))
