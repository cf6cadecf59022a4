"""The control API inside your own asyncio service: one `async with`, and the running engine
can be watched, tuned and scraped over HTTP while your code keeps doing its work.

    python examples/serve_embedded.py                 # until Ctrl+C or SIGTERM
    python examples/serve_embedded.py --seconds 30

Then, with the URL it prints:

    curl -s $URL/v1/snapshot | jq .totals
    curl -s -X PATCH -d '{"queue.maxsize": 32, "limits.demo": 8}' $URL/v1/knobs
    curl -s $URL/metrics | grep sluice_chunks
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal

from sluice.engine import Engine, load_config
from sluice.engine.control import serve_control


async def accept_jobs(engine: Engine) -> None:
    """Stands for your service's own work: a new prompt every 100 ms, on the demo model."""
    for n in itertools.count():
        engine.add_session(f"question {n}", "demo", session_id=f"job-{n}")
        await asyncio.sleep(0.1)


async def main(seconds: float | None) -> None:
    """Run the work beside the control API until a signal (or `seconds`)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # SLUICE_TOKEN in the environment turns on bearer auth; the address stays on loopback.
    async with (
        Engine(load_config()) as engine,
        serve_control(engine, bind="127.0.0.1:0") as server,
    ):
        print(f"control API: {server.url}", flush=True)
        work = asyncio.create_task(accept_jobs(engine))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
    # Leaving the block stopped the server first, then cancelled every session.


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, help="stop after this long")
    asyncio.run(main(parser.parse_args().seconds))
