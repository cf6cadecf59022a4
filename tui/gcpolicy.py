"""How the app's process collects garbage: start-up objects frozen, full collections rarer.

A full (generation 2) collection walks every container object and stops the event loop while
it does. With the app's widgets, its render caches and a thousand sessions that is 100-200 ms,
every few seconds (chunks that wait in full buffers live long enough to reach the oldest
generation), so a key pressed meanwhile waits that long. Freezing what exists once the screen
is built (Textual's widgets, styles and the app's own objects, alive until it exits) takes
them out of every later collection, and needing ten times as many younger collections
before a full one makes full ones rare. Garbage in reference cycles still gets collected,
some seconds later. Only the `sluice` command's app does this: a library or a test suite
keeps its own settings.
"""

from __future__ import annotations

import gc

__all__ = ["relax", "restore"]

FULL_EVERY = 100  # younger (generation 1) collections per full one; CPython's default is 10


def relax() -> tuple[int, int, int]:
    """Freeze what is alive now and make full collections rarer; returns the old thresholds."""
    old = gc.get_threshold()
    gc.collect()  # what is garbage now is not frozen with the rest
    gc.freeze()
    gc.set_threshold(old[0], old[1], max(old[2], FULL_EVERY))
    return old


def restore(thresholds: tuple[int, int, int]) -> None:
    """Undo `relax`: thresholds back, frozen objects collectable again."""
    gc.set_threshold(*thresholds)
    gc.unfreeze()
