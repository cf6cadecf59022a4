"""Cluster mode: nodes share the caps of some backends and every knob through one Redis.

`[cluster] redis_url` (or SLUICE_REDIS_URL) turns it on; the engine then makes a
`ClusterLink` (link.py), which leases the shared backends' permits through `ClusterLimiter`
(limiter.py, scripts.py), keeps the knobs in step (knobs.py) and registers the node
(registry.py). Importing this package does not load the Redis client; `link` does.
"""

from sluice.engine.cluster.options import (
    REDIS_URL_ENV,
    ClusterConfigError,
    ClusterOptions,
    cluster_options,
    viewer_options,
)

__all__ = [
    "REDIS_URL_ENV",
    "ClusterConfigError",
    "ClusterOptions",
    "cluster_options",
    "viewer_options",
]
