"""The cluster tests' fixtures (tests/cluster/fixtures.py)."""

from tests.cluster.fixtures import cluster_name, own_redis, redis_server

__all__ = ["cluster_name", "own_redis", "redis_server"]
