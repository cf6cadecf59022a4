"""The serve benchmark part at tiny sizes: it runs, its figures have the right shape, it
reports and round-trips; never a time asserted."""

from __future__ import annotations

import io
import json

from sluice.bench.report import goals, markdown
from sluice.bench.runner import BenchParams, result_from_dict
from sluice.bench.serve import VIEWERS, run_serve
from sluice.cli.bench import build_params
from sluice.cli.command import CommandIO
from sluice.cli.main import build_parser, run_command
from sluice.engine.config import Config


async def test_run_serve_measures_every_viewer_setting_and_the_scrape() -> None:
    result = await run_serve(20, rate=50.0, window=0.3, rounds=1, warmup=0.2, scrapes=2)
    assert [v.label for v in result.viewers] == [label for label, _, _ in VIEWERS]
    none = result.viewers[0]
    assert none.rate is None and none.ratio == 1.0
    for v in result.viewers:
        assert v.delivered_cps > 0 and v.ratio > 0
        if v.rate is not None:
            assert v.frames_per_s > 0
    assert result.scrape_bytes > 0 and result.scrape_p50 > 0
    assert result.frame_full_bytes > result.frame_light_bytes > 0


def test_sluice_bench_only_serve_reports_a_table_and_the_goal() -> None:
    args = build_parser().parse_args(
        ["bench", "--only", "serve", "--quick", "--json", "--in-process"]
    )
    out = io.StringIO()
    assert run_command(args, CommandIO(out, io.StringIO()), Config()) == 0
    data = json.loads(out.getvalue())
    assert data["serve"]["sessions"] == 100 and not data["errors"]
    result = result_from_dict(data)
    assert result.serve is not None
    text = markdown(result)
    assert "### Serving (`sluice serve`)" in text and "/metrics" in text
    assert any("served" in g.name for g in goals(result))


def test_serve_is_one_of_the_parts_run_by_default() -> None:
    assert "serve" in BenchParams().parts
    args = build_parser().parse_args(["bench", "--only", "scale,serve"])
    assert build_params(args).parts == ("scale", "serve")
