"""CellCachedTable draws exactly what DataTable draws, and re-renders only what changed."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.widgets import DataTable

from sluice.tui.cells import CellCachedTable
from tests.fakes import wait_until

COLUMNS = (("id", 8), ("n", 5), ("text", 12), ("state", 9))
ROWS: list[tuple[Any, ...]] = [
    ("demo-0001", "12", "plain", Text("streaming", style="green")),
    ("demo-0002", 7, "[bold]markup[/]", Text("failed", style="bold red")),
    ("demo-0003", 3.14159, "日本語テキ", Text.assemble(("ab", "red"), ("cd", "blue"))),
    ("demo-0004", "", "much too long for it", Text("right", justify="right")),
    ("demo-0005", None, "two\nlines", Text("")),
    ("w", "1,234", "tab\there", Text("x" * 20, style="red")),
    # right-justified, as the app's numbers: plain, styled, with spans, trailing spaces
    ("n1", Text("12", justify="right"), Text("9.5ms", justify="right", style="bold"), ""),
    ("n2", Text("1.2k ", justify="right"), Text.assemble(("4", "red"), "/16", justify="right"), ""),
]


class Pair(App[None]):
    """The same data in a plain DataTable and in a CellCachedTable, side by side."""

    CSS = "DataTable { height: 11; width: 60; }  .narrow { width: 30; }"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield DataTable(id="plain", cursor_type="row", zebra_stripes=True)
            yield CellCachedTable(id="cached", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        for table in self.query(DataTable):
            for key, width in COLUMNS:
                table.add_column(key, width=width, key=key)
            for i, row in enumerate(ROWS):
                table.add_row(*row, key=f"r{i}")


def lines(table: DataTable[Any]) -> list[list[tuple[str, Any]]]:
    """Every line of the table as (text, style) pairs, styles and click metadata included."""
    width, height = table.size
    return [
        [(seg.text, seg.style) for seg in strip]
        for strip in table.render_lines(Region(0, 0, width, height))
    ]


async def test_the_cached_table_draws_what_datatable_draws() -> None:
    app = Pair()
    async with app.run_test(size=(70, 24)) as pilot:
        plain = app.query_one("#plain", DataTable)
        cached = app.query_one("#cached", CellCachedTable)
        app.set_focus(None)
        await pilot.pause()
        assert lines(cached) == lines(plain)
        # cursor on another row, the mouse over a row, focus: the same again
        for table in (plain, cached):
            table.move_cursor(row=2)
            table.hover_coordinate = Coordinate(4, 1)
            table._show_hover_cursor = True
        await pilot.pause()
        assert lines(cached) == lines(plain)
        plain.focus()  # a focused table draws its cursor differently
        await pilot.pause()
        focused_plain = lines(plain)
        cached.focus()
        await pilot.pause()
        assert lines(cached) == focused_plain
        # after updates, the cached table still matches
        for table in (plain, cached):
            table.update_cell("r1", "n", "8")
            table.update_cell("r3", "text", Text("fits", style="italic"))
        await pilot.pause()
        assert lines(cached)[1:] != focused_plain[1:]  # (the data did change)
        app.set_focus(None)
        await pilot.pause()
        assert lines(cached) == lines(plain)


async def test_an_update_renders_only_the_changed_cell_again() -> None:
    app = Pair()
    async with app.run_test(size=(70, 24)) as pilot:
        cached = app.query_one("#cached", CellCachedTable)
        await pilot.pause()
        lines(cached)
        rendered: list[tuple[int, int]] = []
        original = CellCachedTable._render_one_line_cell

        def counting(self: CellCachedTable, row: int, column: int, *args: Any) -> Any:
            rendered.append((row, column))
            return original(self, row, column, *args)

        CellCachedTable._render_one_line_cell = counting  # type: ignore[method-assign]
        try:
            cached.update_cell("r1", "n", "8")
            await pilot.pause()
            lines(cached)
        finally:
            CellCachedTable._render_one_line_cell = original  # type: ignore[method-assign]
        assert rendered == [(1, 1)]  # row 1, column "n": nothing else


async def test_a_narrow_or_scrolled_table_draws_what_datatable_draws() -> None:
    # Columns out of view are not rendered by the cached table: the visible part must
    # still be exactly DataTable's, however the table is scrolled.
    app = Pair()
    async with app.run_test(size=(70, 24)) as pilot:
        plain = app.query_one("#plain", DataTable)
        cached = app.query_one("#cached", CellCachedTable)
        for table in (plain, cached):
            table.add_class("narrow")
        app.set_focus(None)
        await pilot.pause()
        assert lines(cached) == lines(plain)
        for x in (3, 11, 17, 40):
            for table in (plain, cached):
                table.scroll_to(x=x, animate=False)
            await pilot.pause()
            assert cached.scroll_x == plain.scroll_x > 0
            assert lines(cached) == lines(plain), x


class Tall(App[None]):
    """Thirty rows in view, in both tables."""

    CSS = "DataTable { height: 34; width: 40; }"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield DataTable(id="plain", cursor_type="row", zebra_stripes=True)
            yield CellCachedTable(id="cached", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        for table in self.query(DataTable):
            table.add_column("id", width=6, key="id")
            table.add_column("n", width=6, key="n")
            for i in range(30):
                table.add_row(f"r{i}", str(i), key=f"r{i}")


async def test_a_big_update_is_repainted_a_batch_of_rows_at_a_time() -> None:
    app = Tall()
    async with app.run_test(size=(50, 80)) as pilot:
        plain = app.query_one("#plain", DataTable)
        cached = app.query_one("#cached", CellCachedTable)
        app.set_focus(None)
        await pilot.pause()
        repainted: list[int] = []
        original = CellCachedTable.refresh_row

        def counting(self: CellCachedTable, row_index: int) -> Any:
            repainted.append(row_index)
            return original(self, row_index)

        CellCachedTable.refresh_row = counting  # type: ignore[method-assign]
        try:
            for table in (plain, cached):
                for i in range(30):
                    table.update_cell(f"r{i}", "n", str(100 + i))
            await pilot.pause()
            await pilot.pause()
        finally:
            CellCachedTable.refresh_row = original  # type: ignore[method-assign]
        assert sorted(repainted) == list(range(30))  # each updated row once, in batches
        assert lines(cached) == lines(plain)


async def test_sorting_and_removing_rows_in_a_deferred_repaint_draw_the_same() -> None:
    app = Tall()
    async with app.run_test(size=(50, 80)) as pilot:
        plain = app.query_one("#plain", DataTable)
        cached = app.query_one("#cached", CellCachedTable)
        app.set_focus(None)
        await pilot.pause()
        plain.sort("n", key=lambda n: -int(n))
        with cached.deferred_repaint():
            cached.sort("n", key=lambda n: -int(n))
        await pilot.pause()
        await pilot.pause()
        assert lines(cached) == lines(plain)
        plain.remove_row("r29")
        with cached.deferred_repaint():
            cached.remove_row("r29")  # one row fewer: the last line turns blank
        await pilot.pause()
        await pilot.pause()
        assert lines(cached) == lines(plain)


class Numbers(App[None]):
    """A table of right-justified numbers, as the app's."""

    def compose(self) -> ComposeResult:
        yield CellCachedTable(id="cached", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(CellCachedTable)
        table.add_column("n", width=7, key="n")
        table.add_column("t", width=8, key="t")
        for i in range(5):
            table.add_row(
                Text(str(i * 37), justify="right"),
                Text(f"{i}.5ms", justify="right", style="bold"),
                key=f"r{i}",
            )


async def test_right_justified_numbers_take_the_direct_path() -> None:
    # The app's numeric columns are right-justified: they must not go through Rich's
    # general pipeline (DataTable's own _render_cell), which costs 0.1-0.4 ms a cell.
    app = Numbers()
    async with app.run_test(size=(40, 10)) as pilot:
        cached = app.query_one(CellCachedTable)
        await pilot.pause()
        fallback: list[tuple[int, int]] = []
        original = DataTable._render_cell

        def counting(self: DataTable[Any], row: int, column: int, *args: Any) -> Any:
            fallback.append((row, column))
            return original(self, row, column, *args)

        DataTable._render_cell = counting  # type: ignore[method-assign]
        try:
            cached._clear_caches()
            lines(cached)
        finally:
            DataTable._render_cell = original  # type: ignore[method-assign]
        assert fallback == []


async def test_a_batch_of_rows_waits_once_for_what_hold_repaint_says() -> None:
    # The app holds the rows' repaint while a key just pressed gets its frame; held, a
    # batch is still repainted (keys held down cannot starve the table).
    app = Tall()
    async with app.run_test(size=(50, 80)) as pilot:
        cached = app.query_one("#cached", CellCachedTable)
        app.set_focus(None)
        await pilot.pause()
        holds: list[float] = []

        def hold() -> float:
            holds.append(0.3)
            return 0.3

        cached.hold_repaint = hold
        repainted: list[int] = []
        original = CellCachedTable.refresh_row

        def counting(self: CellCachedTable, row_index: int) -> Any:
            repainted.append(row_index)
            return original(self, row_index)

        CellCachedTable.refresh_row = counting  # type: ignore[method-assign]
        try:
            for i in range(30):
                cached.update_cell(f"r{i}", "n", str(100 + i))
            await pilot.pause()
            assert repainted == [] and holds  # held
            await wait_until(lambda: len(repainted) == 30, pause=pilot.pause)
        finally:
            CellCachedTable.refresh_row = original  # type: ignore[method-assign]
        assert sorted(repainted) == list(range(30))
