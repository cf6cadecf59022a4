"""The app on an engine that is a cluster node: its header names the cluster and its nodes,
and a knob moved in the app reaches another node."""

from __future__ import annotations

import asyncio

from sluice.bench.redis_server import RedisServer
from sluice.engine import Engine
from sluice.tui.app import SluiceApp
from sluice.tui.readout import Readout
from tests.cluster.helpers import node_config, until


async def test_the_apps_header_shows_its_cluster_and_its_knobs_reach_other_nodes(
    redis_server: RedisServer, cluster_name: str
) -> None:
    other = Engine(node_config(redis_server.url, cluster_name, "other"))
    async with other:
        app = SluiceApp(
            config=node_config(redis_server.url, cluster_name, "app-node"),
            continuous=False,
            header_interval=0.1,
        )
        async with app.run_test(size=(160, 40)) as pilot:
            header = app.query_one("#process", Readout)
            for _ in range(300):
                await pilot.pause(0.05)
                if f"cluster {cluster_name}: 2 nodes" in header.plain:
                    break
            assert f"cluster {cluster_name}: 2 nodes" in header.plain
            assert "cluster 0/3 across 2 nodes" in app.query_one("#backends", Readout).plain
            app.engine.set_knob("queue.maxsize", 77)  # the call a slider's move makes
            await until(lambda: other.knob("queue.maxsize") == 77, 2.0)
            await pilot.press("q")
        await asyncio.sleep(0)
