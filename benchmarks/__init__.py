"""Sluice benchmarks: the original scenario time-scaled, the engine's overhead, scale, and the
cost per delta of long responses.

Each part is an async function returning a frozen result with a `to_dict()`; `runner` runs
them (in fresh processes where memory figures need a clean start), `report` prints the
markdown table and the goals, `plot` draws the SVG; `sluice bench` (cli/bench.py) reads the
options and calls them. Tests call the same functions with tiny sizes. Nothing here imports
`sluice.cli`.
"""
