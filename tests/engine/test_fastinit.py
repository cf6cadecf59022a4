"""The quick frozen-dataclass `__init__` builds exactly what the generated one builds."""

from __future__ import annotations

import dataclasses
from dataclasses import FrozenInstanceError, dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.engine.fastinit import fast_frozen_init
from sluice.engine.histogram import Percentiles
from sluice.engine.snapshot import SessionSnapshot


@dataclass(frozen=True, slots=True)
class _Plain:
    a: int
    b: str | None
    c: float = 1.5
    d: str | None = None


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class _Quick:
    a: int
    b: str | None
    c: float = 1.5
    d: str | None = None


_values = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5))


@given(
    st.integers(), st.one_of(st.none(), st.text(max_size=5)), st.floats(allow_nan=False), _values
)
def test_same_fields_as_the_generated_init(a: int, b: str | None, c: float, d: object) -> None:
    """Positional, keyword and defaulted arguments land in the same fields."""
    for args, kwargs in (
        ((a, b), {}),
        ((a,), {"b": b, "c": c}),
        ((), {"a": a, "b": b, "c": c, "d": d}),
    ):
        slow = _Plain(*args, **kwargs)  # type: ignore[arg-type]
        quick = _Quick(*args, **kwargs)
        assert dataclasses.astuple(quick) == dataclasses.astuple(slow)


def test_still_frozen_and_strict() -> None:
    """The quick init keeps the class frozen and refuses missing or unknown arguments."""
    quick = _Quick(1, "x")
    with pytest.raises(FrozenInstanceError):
        quick.a = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        _Quick(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _Quick(1, "x", e=3)  # type: ignore[call-arg]


def test_refuses_default_factories() -> None:
    """A field it cannot build the same way is refused when the class is made, not later."""

    @dataclass(frozen=True, slots=True)
    class WithFactory:
        a: list[int] = field(default_factory=list)

    with pytest.raises(TypeError, match=r"WithFactory\.a"):
        fast_frozen_init(WithFactory)


_pct = st.builds(
    Percentiles, *(st.floats(allow_nan=False) for _ in dataclasses.fields(Percentiles))
)
_opt_float = st.one_of(st.none(), st.floats(allow_nan=False))
_opt_int = st.one_of(st.none(), st.integers())


@given(st.data())
def test_session_snapshot_round_trips(data: st.DataObject) -> None:
    """Every field of a SessionSnapshot built with the quick init survives its JSON dict."""
    kinds = {
        "itl": _pct,
        "queue_wait": _pct,
        "token_age": _pct,
        "consumer_call": _pct,
    }
    values = {}
    for f in dataclasses.fields(SessionSnapshot):
        if f.name in kinds:
            values[f.name] = data.draw(kinds[f.name])
        elif f.type in ("int",):
            values[f.name] = data.draw(st.integers())
        elif f.type in ("float",):
            values[f.name] = data.draw(st.floats(allow_nan=False))
        elif f.type == "str":
            values[f.name] = data.draw(st.text(max_size=5))
        elif "int" in str(f.type):
            values[f.name] = data.draw(_opt_int)
        elif "float" in str(f.type):
            values[f.name] = data.draw(_opt_float)
        else:
            values[f.name] = data.draw(st.one_of(st.none(), st.text(max_size=5)))
    snap = SessionSnapshot(**values)
    assert {f.name: getattr(snap, f.name) for f in dataclasses.fields(snap)} == values
    assert SessionSnapshot.from_dict(snap.to_dict()) == snap
