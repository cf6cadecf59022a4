"""Auto-tune: pure controllers that move a knob from measured signals, and the runner that
feeds them from a running engine and applies what they return through `Engine.set_knobs`.

The controllers (`AimdLimit`, `GradientLimit`, `BufferTuner`) hold no clock and do no I/O:
they are fed samples with their timestamps and return a `Move` (the next value and why) or
None, so their tests are exact. `AutotuneRunner` is the engine side (engine/autotune/runner.py).
"""

from sluice.engine.autotune.aimd import AimdLimit
from sluice.engine.autotune.buffer import BufferMove, BufferTuner
from sluice.engine.autotune.gradient import GradientLimit
from sluice.engine.autotune.move import Move

__all__ = ["AimdLimit", "BufferMove", "BufferTuner", "GradientLimit", "Move"]
