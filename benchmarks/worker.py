"""Runs one benchmark job in a fresh process: `python -m benchmarks.worker '<job json>'`.

Prints the result as one JSON object on stdout; `benchmarks.runner` starts it.
"""

from __future__ import annotations

import json
import sys

from sluice.bench.runner import run_job


def main(argv: list[str]) -> int:
    """Run the job given as the only argument and print its result."""
    if len(argv) != 1:
        sys.stderr.write("usage: python -m benchmarks.worker '<job json>'\n")
        return 2
    result = run_job(json.loads(argv[0]))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
