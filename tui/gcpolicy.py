"""How the app's process collects garbage: start-up objects frozen, collections rarer.

A collection stops the event loop while it walks the objects of its generations, so a key
pressed meanwhile waits. A full (generation 2) collection walks every container object:
with the app's widgets, its render caches and a thousand sessions that is 100-200 ms.
Freezing what exists once the screen is built (Textual's widgets, styles and the app's own
objects, alive until it exits) takes them out of every later collection.

CPython starts a young collection after 700 more container objects were made than freed,
and a sample of 1,000 sessions makes ~6,000 that live a second (its predecessor is freed
right after): at 1,000 sessions that was ~3 collections a second, a generation-1 one (8-20
ms) every few seconds, each walking the sample. Starting one only after 20,000 lets the
short-lived samples come and go between collections: at 1,000 sessions 4 collections in 90 s
(~20 ms each) instead of 300 (25 of them 8-20 ms), with the same memory; full collections
(every 100 young ones, CPython's default) come after 2 million objects, three times rarer
than with the 100 generation-1 collections this module asked for before. Garbage in
reference cycles still gets collected, some seconds later. Only the `sluice` command's app
does this: a library or a test suite keeps its own settings.
"""

from __future__ import annotations

import gc

__all__ = ["relax", "restore"]

YOUNG_AFTER = 20_000  # objects made less freed before a young collection; CPython's is 700


def relax() -> tuple[int, int, int]:
    """Freeze what is alive now and make collections rarer; returns the old thresholds."""
    old = gc.get_threshold()
    gc.collect()  # what is garbage now is not frozen with the rest
    gc.freeze()
    gc.set_threshold(max(old[0], YOUNG_AFTER), old[1], old[2])
    return old


def restore(thresholds: tuple[int, int, int]) -> None:
    """Undo `relax`: thresholds back, frozen objects collectable again."""
    gc.set_threshold(*thresholds)
    gc.unfreeze()
