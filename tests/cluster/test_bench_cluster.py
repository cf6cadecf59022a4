"""`sluice bench --only cluster` in small: two serve nodes and a standalone baseline against
the counting upstream; the figures' shape, the report's table and goals, and the options."""

from __future__ import annotations

import json

from sluice.bench.cluster import ClusterResult, run_cluster
from sluice.bench.measure import machine
from sluice.bench.redis_server import RedisServer
from sluice.bench.report import goals, markdown
from sluice.bench.runner import BenchResult, result_from_dict
from sluice.cli.bench import build_params
from sluice.cli.main import build_parser


async def test_a_small_cluster_run_and_its_report(redis_server: RedisServer) -> None:
    # redis_server: the fixture skips when redis-server is absent; the part starts its own.
    result = await run_cluster(
        (2,), limit=2, inflight=6, deltas=5, pace=0.02, lease_s=2.0, window=1.0, warmup=0.5,
        knob_changes=2,
    )  # fmt: skip
    assert ClusterResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    (two,) = result.sizes
    assert two.nodes == 2 and two.limit == 2
    assert 1 <= two.peak <= 2 and two.peak_ratio == two.peak / 2
    assert two.chunks_per_s > 0 and result.one_node_cps > 0
    assert two.grants > 0 and two.grant_p50 is not None
    assert two.knob_changes == 2 and two.knob_p99 >= two.knob_p50 > 0
    assert two.recovered_s is not None  # a node was caught holding a permit and killed
    bench = BenchResult(machine=machine(), params={}, wall_s=1.0, cluster=result)
    text = markdown(bench)
    assert "### Cluster (`sluice serve` nodes on one Redis)" in text
    assert "| 2 | " in text
    names = [g.name for g in goals(bench)]
    assert any("shared limit" in n for n in names) and any("kill -9" in n for n in names)
    assert markdown(result_from_dict(json.loads(json.dumps(bench.to_dict())))) == text


def test_the_cluster_part_options() -> None:
    args = build_parser().parse_args(["bench", "--only", "cluster", "--cluster-sizes", "2,3"])
    params = build_params(args)
    assert params.parts == ("cluster",) and params.cluster_sizes == (2, 3)
