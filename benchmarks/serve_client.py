"""The serve benchmark's client, in its own process so its CPU is not the server's:

python -m sluice.bench.serve_client sse URL RATE SESSIONS_RATE
    reads /v1/events, parsing every frame as a viewer would; prints `ready` after the
    first frame, and on SIGTERM one JSON line: {"frames": n, "bytes": n}
python -m sluice.bench.serve_client scrape URL COUNT
    GETs /metrics COUNT times in a row; prints {"seconds": [...], "bytes": n}
"""

from __future__ import annotations

import json
import signal
import sys
import time
from types import FrameType

import httpx


class _Stop(Exception):
    """SIGTERM: report and leave."""


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise _Stop


def sse(url: str, rate: str, sessions_rate: str) -> dict[str, int]:
    """Read frames until SIGTERM; count them and their bytes."""
    frames = size = 0
    signal.signal(signal.SIGTERM, _stop)
    params = {"rate": rate, "sessions_rate": sessions_rate}
    try:
        with (
            httpx.Client(base_url=url, timeout=None) as client,
            client.stream("GET", "/v1/events", params=params) as response,
        ):
            for line in response.iter_lines():
                if line.startswith("data: "):
                    json.loads(line[6:])
                    frames += 1
                    size += len(line)
                    if frames == 1:
                        print("ready", flush=True)
    except _Stop:
        pass
    return {"frames": frames, "bytes": size}


def scrape(url: str, count: int) -> dict[str, object]:
    """Time COUNT scrapes of /metrics, one after another."""
    seconds: list[float] = []
    size = 0
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = client.get("/metrics")
            seconds.append(time.perf_counter() - started)
            response.raise_for_status()
            size = len(response.content)
    return {"seconds": seconds, "bytes": size}


def main(argv: list[str]) -> int:
    """Run the mode named first; print its result as one JSON line."""
    if len(argv) == 4 and argv[0] == "sse":
        result: dict[str, object] = dict(sse(argv[1], argv[2], argv[3]))
    elif len(argv) == 3 and argv[0] == "scrape":
        result = scrape(argv[1], int(argv[2]))
    else:
        sys.stderr.write(__doc__ or "")
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
