"""The auto-tune benchmark at tiny sizes: shapes, zero loss, the goals table; never times."""

from __future__ import annotations

import argparse
import io
import json

from sluice.bench.autotune import QUICK_SPEC, AutotuneResult, LimitRun
from sluice.bench.capacity import answer_length
from sluice.cli.command import CommandIO
from sluice.cli.main import build_parser, run_command
from sluice.engine.config import Config


def test_answer_lengths_vary_by_prompt_around_the_mean() -> None:
    lengths = {answer_length({"messages": [{"content": f"p{n}"}]}, 20) for n in range(50)}
    assert min(lengths) >= 10 and max(lengths) <= 30 and len(lengths) > 5
    assert answer_length({}, 1) >= 1


def test_sluice_bench_only_autotune_quick_runs_every_scenario() -> None:
    args: argparse.Namespace = build_parser().parse_args(
        ["bench", "--only", "autotune", "--quick", "--in-process", "--json"]
    )
    out, err = io.StringIO(), io.StringIO()
    assert run_command(args, CommandIO(out, err), Config()) == 0, err.getvalue()
    data = json.loads(out.getvalue())
    result = AutotuneResult.from_dict(data["autotune"])
    assert result.spec == QUICK_SPEC
    expected = QUICK_SPEC.sessions
    for scenario, runs, rounds in (
        ("claude", result.claude, QUICK_SPEC.claude_rounds),
        ("ollama", result.ollama, QUICK_SPEC.ollama_rounds),
    ):
        assert [r.name for r in runs] == ["auto", f"fixed {QUICK_SPEC.fixed}", "oracle"], scenario
        for run in runs:
            assert run.sessions == expected * rounds
            assert run.lost == 0
            assert 1 <= run.final_limit <= 64
        auto = result.run(scenario, "auto")
        assert auto.failed == 0
        assert isinstance(LimitRun.from_dict(auto.to_dict()), LimitRun)
    oracle = result.run("claude", "oracle")
    assert oracle.throttled == 0  # never above the capacity: the server never refused it
    fixed = result.run("claude", f"fixed {QUICK_SPEC.fixed}")
    assert fixed.throttled > 0  # twice the capacity: refused all along
    assert all(r.ttft_p99 is not None for r in result.ollama)
    buffer = result.buffer
    assert buffer.samples > 0 and buffer.lost == 0
    names = [g["name"] for g in data["goals"]]
    assert sum(name.startswith("autotune") for name in names) == 8
    assert AutotuneResult.from_dict(result.to_dict()) == result
