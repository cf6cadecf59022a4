"""Shared test set-up: loopback only, never a proxy."""

from __future__ import annotations

import os

# HTTP clients here honour proxy variables even for loopback; tests talk to 127.0.0.1 only.
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_name, None)
os.environ.pop("SLUICE_REDIS_URL", None)  # no test joins a cluster it did not ask for
