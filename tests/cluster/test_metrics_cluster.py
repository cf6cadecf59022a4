"""`/metrics` of a cluster node: `sluice_cluster_*` gauges (Redis reachable, live nodes, each
shared backend's cap across the nodes), parsed with prometheus_client's own parser; a
standalone engine has none."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from sluice.bench.redis_server import RedisServer
from sluice.engine import Engine
from sluice.engine.config import Config
from sluice.engine.control.metrics import MetricsRenderer
from tests.cluster.helpers import node_config, until


def _families(engine: Engine) -> dict[str, dict[str, float]]:
    """Each family's samples: value by its `backend` label (or "" without one)."""
    text = MetricsRenderer(engine, "n").render().decode()
    return {
        f.name: {s.labels.get("backend", ""): s.value for s in f.samples}
        for f in text_string_to_metric_families(text)
    }


async def test_cluster_gauges_count_every_node_and_the_shared_cap(
    own_redis: RedisServer, cluster_name: str
) -> None:
    long = {"limits.demo": 2, "demo.tokens": 100_000, "demo.rate": 20.0}
    a = Engine(node_config(own_redis.url, cluster_name, "a", **long))
    b = Engine(node_config(own_redis.url, cluster_name, "b", **long))
    async with a, b:
        a.add_demo_sessions(2)  # one more than the cap: two hold permits, one waits
        b.add_demo_sessions(1)

        def held() -> bool:
            got = _families(a)
            return (
                got["sluice_cluster_shared_in_use"].get("demo") == 2
                and got["sluice_cluster_nodes"][""] == 2
            )

        await until(held, 10)
        got = _families(a)
        assert got["sluice_cluster_connected"] == {"": 1.0}
        assert got["sluice_cluster_shared_limit"] == {"demo": 2.0}
        assert got["sluice_cluster_shared_waiting"]["demo"] >= 0
        assert "sluice_cluster_shared_in_use" in _families(b)

        own_redis.stop()  # unreachable: connected goes to 0
        await until(lambda: _families(a)["sluice_cluster_connected"] == {"": 0.0}, 10)


async def test_a_standalone_engine_has_no_cluster_gauges() -> None:
    async with Engine(Config()) as engine:
        assert not [name for name in _families(engine) if name.startswith("sluice_cluster")]
