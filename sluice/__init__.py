"""Sluice: back-pressure for LLM token streams, with a live app to tune it.

One import name for the whole project. The code lives in the repository's top-level folders
(`engine/`, `tui/`, `cli/`, `benchmarks/`, as the design card fixes); the entries in this
folder are symbolic links that map them into this package, so `sluice.engine`,
`sluice.tui`, `sluice.cli` and `sluice.bench` work the same from a checkout, an editable
install and a wheel (setuptools copies the linked files into the wheel).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sluice")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
