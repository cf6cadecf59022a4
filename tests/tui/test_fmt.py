"""fmt: outside text made safe to show, and numbers that always fit their column."""

from __future__ import annotations

import dataclasses
import unicodedata

from hypothesis import example, given
from hypothesis import strategies as st

from sluice.tui import fmt
from sluice.tui.columns import COLUMNS

from . import frozen


def test_clean_shows_control_characters_as_their_escapes() -> None:
    assert fmt.clean("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"
    assert fmt.clean("a\nb\tc\r") == "a↵b c\\r"
    assert fmt.clean("a\nb", one_line=False) == "a\nb"
    assert fmt.clean("x\u202ey") == "x\\u202ey"  # a bidi override would reorder the line
    assert fmt.clean("[@click=app.quit]x[/]") == "[@click=app.quit]x[/]"  # markup is just text
    assert fmt.clean("ab" * 10, limit=5) == "abab…"
    assert fmt.clean("plain ✓ 漢字") == "plain ✓ 漢字"


@given(st.text())
def test_clean_leaves_no_control_character(text: str) -> None:
    for one_line in (True, False):
        shown = fmt.clean(text, one_line=one_line)
        for ch in shown:
            if ch == "\n" and not one_line:
                continue
            assert unicodedata.category(ch) not in ("Cc", "Cs", "Zl", "Zp"), repr(ch)


@given(st.integers(0, 10**15), st.integers(4, 8))
def test_short_int_fits_its_width(value: int, width: int) -> None:
    assert len(fmt.short_int(value, width)) <= width


@given(st.floats(0, 10**7, allow_nan=False))
def test_durations_rates_and_sizes_stay_short(value: float) -> None:
    assert len(fmt.seconds(value)) <= 6
    assert len(fmt.rate(value)) <= 5
    assert len(fmt.nbytes(int(value * 10**6))) <= 5


@example(depth=10_000, maxsize=1000, count=0, seconds=0.0)  # "10000/1000" overflowed once
@given(
    depth=st.integers(0, 10**9),
    maxsize=st.integers(0, 1024),
    count=st.integers(0, 10**12),
    seconds=st.floats(0, 10**6, allow_nan=False),
)
def test_every_number_fits_its_column(depth: int, maxsize: int, count: int, seconds: float) -> None:
    base = frozen.session(1, 0)
    p = dataclasses.replace(base.queue_wait, p50=seconds, p99=seconds)
    s = dataclasses.replace(
        base,
        depth=depth,
        maxsize=maxsize,
        high_water=depth,
        tokens_in=count,
        tokens_out=count,
        memory_bytes=count,
        buffered_bytes=count,
        rate_in=float(count),
        attempts=count,
        ttft=seconds,
        queue_wait=p,
        token_age=p,
    )
    for col in COLUMNS:
        if col.numeric:
            assert len(col.text(s)) < col.width, col.key  # and one cell left as the gap
