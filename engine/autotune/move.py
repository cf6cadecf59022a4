"""Move: what a controller returns when its knob should change: the new value and why."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Move", "check_bounds"]


@dataclass(frozen=True, slots=True)
class Move:
    """A controller's decision at sample time `at` (the caller's clock): set the knob to
    `value`. `change` is the step in words (`-10%`, `+1`) and `cause` what caused it
    (`429`, `limit reached, no errors`); `stamped` says the cause is one event whose time
    belongs in the reason (`-10%: 429 at 18:04:12`), as a window's verdict does not."""

    value: int
    change: str
    cause: str
    at: float
    stamped: bool = False

    def reason(self, clock_text: str = "") -> str:
        """The move for a person: `-10%: 429 at 18:04:12` (given the wall-clock text of
        `at` for a stamped move), `+1: limit reached, no errors`."""
        text = f"{self.change}: {self.cause}"
        return f"{text} at {clock_text}" if self.stamped and clock_text else text


def check_bounds(minimum: int, maximum: int) -> None:
    """ValueError unless 1 <= minimum <= maximum (the bounds of a limit law)."""
    if not 1 <= minimum <= maximum:
        raise ValueError(f"bounds must satisfy 1 <= minimum <= maximum, got {minimum}, {maximum}")
