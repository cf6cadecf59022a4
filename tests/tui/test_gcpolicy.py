"""The app's garbage-collection policy: start-up objects frozen, young collections rare."""

from __future__ import annotations

import gc

from sluice.tui import gcpolicy


def test_relax_freezes_and_makes_young_collections_rare_and_restore_undoes_it() -> None:
    before = gc.get_threshold()
    old = gcpolicy.relax()
    try:
        assert old == before
        assert gc.get_freeze_count() > 0  # what was alive is out of later collections
        young, middle, full = gc.get_threshold()
        # A sample of 1,000 sessions (~6,000 objects living a second) does not start one.
        assert young >= 20_000
        # Full collections: after at least as many objects made as with CPython's defaults.
        assert young * middle * full >= 700 * 10 * 10
    finally:
        gcpolicy.restore(old)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
