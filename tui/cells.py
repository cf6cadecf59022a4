"""CellCachedTable: a DataTable that renders again only the rows and cells that changed.

Textual's DataTable keys its render caches on a counter that every `update_cell` bumps, so
one changed cell makes it render every visible cell again and assemble every visible row
again, each cell through Rich's general pipeline (markup, padding, styling, cropping:
0.1-0.4 ms). A live table changes a few cells a second and shows dozens of rows, so that was
most of the app's CPU, and at 1,000 sessions a frame took over 100 ms (keys waited for it).

This subclass keeps:
- caches of rendered cells and rows keyed by what decides the output (the content, the
  position, the widths, the style, whether the cursor or the mouse is on the row), so what
  did not change is reused across updates;
- a direct path for the common cell (one line of `Text` that fits its column) and the common
  row (no labels, no fixed columns, a row cursor), which produces the same segments as
  DataTable's own code without the general pipeline; anything else goes to DataTable;
- the widget's style and the rows' stripe styles worked out once per render pass instead of
  once per line or row (each walks the CSS).

It relies on DataTable internals (`_render_cell`, `_render_line_in_row` and the fields they
read); tests/tui/test_cells.py checks its output against DataTable's own, cell by cell and
row by row, so a Textual release that changes them fails there. Anything that invalidates
Textual's caches as a whole (a style or theme change, cursor shown or hidden, stripes,
padding) clears these too.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Self

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.coordinate import Coordinate
from textual.geometry import Region, Size
from textual.reactive import Reactive
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets._data_table import default_cell_formatter
from textual.widgets.data_table import ColumnKey, RowKey

from sluice.tui.textkey import render_key

__all__ = ["CellCachedTable"]

# A screen or two of cells and rows: what stays on screen stays cached (an LRU keeps what
# every frame uses). Rendered lines are thousands of small objects that the garbage
# collector walks on every full collection, and a full collection stops the app, so the
# caches stay this small, and DataTable's own (keyed on its update counter, so emptied by
# every update; used here only where this class falls back to DataTable) are shrunk.
CELL_CACHE_SIZE = 1024
ROW_CACHE_SIZE = 160
DATATABLE_CACHE_SIZE = 64
ROWS_PER_FRAME = 12  # updated rows repainted per frame (at 1,000 sessions ~10 ms of frame)

Lines = list[list[Segment]]
RowLines = tuple[Lines, Lines]  # (fixed cells, scrollable cells), one line each


@dataclass(frozen=True, slots=True)
class _Settings:
    """The table's settings a render pass reads for every cell and row, read once (each is a
    reactive attribute, and a pass reads them thousands of times)."""

    padding: int
    cursor_type: str
    show_cursor: bool
    fixed_rows: int
    fixed_columns: int
    css_foreground: bool
    css_background: bool
    width: int
    widths: tuple[int, ...]  # the ordered columns' render widths


_EMPTY = Text(no_wrap=True, end="")
_NEWLINE = Text("\n")


def _segments(text: Text, console: Console) -> list[Segment]:
    """One line of text as Rich renders it in a table cell: its base style then its spans."""
    if not text.spans:  # the common cell: one segment
        return [Segment(text.plain, console.get_style(text.style) if text.style else None)]
    # As Text's own rendering does: joining lines turns the base style into a first span.
    return list(_NEWLINE.join([text]).render(console, end=""))


def _columns_in_view(widths: tuple[int, ...], x1: int, x2: int) -> tuple[int, int]:
    """The first and last column (by index) with a cell between x1 and x2."""
    first, last, x = len(widths), -1, 0
    for index, width in enumerate(widths):
        if x < x2 and x + width > x1:
            first = min(first, index)
            last = index
        x += width
    return first, last


class CellCachedTable(DataTable[Any]):
    """A DataTable whose cells and rows render again only when their content or look changed."""

    # A row added or removed changes the virtual size, and Textual's reactive for it lays the
    # whole screen out (~17 ms with this app's screen): once a second with a live demo. Only
    # a scrollbar that comes or goes needs that; otherwise the scrollbars are updated here.
    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)

    def watch_virtual_size(self, old: Size, new: Size) -> None:
        """Lay the screen out if a scrollbar comes or goes, else update the scrollbars."""
        region = self.scrollable_content_region
        if not region.area or self._bars_for(old, region.size) != self._bars_for(new, region.size):
            self.refresh(layout=True)
            return
        self._scroll_update(new)  # the rows themselves are repainted where they changed

    @staticmethod
    def _bars_for(virtual: Size, view: Size) -> tuple[bool, bool]:
        """Whether content of size `virtual` overflows a view of size `view` (across, down)."""
        return virtual.width > view.width, virtual.height > view.height

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set first: DataTable's own set-up may already clear caches.
        self._cells_by_content: LRUCache[tuple[Hashable, ...], Lines] = LRUCache(CELL_CACHE_SIZE)
        self._rows_by_content: LRUCache[tuple[Hashable, ...], RowLines] = LRUCache(ROW_CACHE_SIZE)
        # Finished lines by position, kept with the row they were made from.
        self._lines_by_row: LRUCache[tuple[Hashable, ...], tuple[RowLines, Strip]] = LRUCache(
            ROW_CACHE_SIZE
        )
        self._style_this_pass: Style | None = None
        self._settings_this_pass: _Settings | None = None
        self._row_styles_this_pass: dict[tuple[int, Style], Style] = {}
        self._updating_cell = False
        self._deferring = False  # inside deferred_repaint()
        self._whole_asked = False  # a whole-table repaint was asked for meanwhile
        self._dirty_rows: set[RowKey] = set()  # updated since the last repaint request
        self._in_view: tuple[int, int] | None = None  # columns a line being rendered shows
        # Seconds a batch of repainted rows should wait (0: none): the app's key just
        # pressed goes first, its frame not joined by a batch of rows.
        self.hold_repaint: Callable[[], float] = lambda: 0.0
        super().__init__(*args, **kwargs)
        for cache in (
            self._row_render_cache,
            self._cell_render_cache,
            self._row_renderable_cache,
            self._line_cache,
        ):
            cache.maxsize = DATATABLE_CACHE_SIZE

    # -- updates ------------------------------------------------------------------------------

    def update_cell(
        self,
        row_key: RowKey | str,
        column_key: ColumnKey | str,
        value: Any,
        *,
        update_width: bool = False,
    ) -> None:
        """As DataTable's, but repaints only the rows updated (none scrolled out of view)
        instead of the whole table, so a frame costs what changed on screen; the repaint is
        asked for once, after the current batch of updates."""
        if update_width:  # the columns may move: the whole table
            super().update_cell(row_key, column_key, value, update_width=True)
            return
        self._updating_cell = True
        try:
            super().update_cell(row_key, column_key, value)
        finally:
            self._updating_cell = False
        self._mark_dirty([RowKey(row_key) if isinstance(row_key, str) else row_key])

    @contextmanager
    def deferred_repaint(self) -> Iterator[None]:
        """Within it, the whole-table repaints DataTable asks for (sorting, adding or
        removing rows) become repaints of the rows in view, a batch per frame as for
        updates (all at once if rows went away: lines at the end turn blank)."""
        rows_before = self.row_count
        self._deferring, self._whole_asked = True, False
        try:
            yield
        finally:
            self._deferring = False
        if not self._whole_asked:
            return
        if self.row_count < rows_before:
            self.refresh()
            return
        top = int(self.scroll_y)
        in_view = range(top, min(self.row_count, top + self.size.height))
        self._mark_dirty([self._row_locations.get_key(index) for index in in_view])

    def _mark_dirty(self, row_keys: Iterable[RowKey | None]) -> None:
        """Repaint these rows after the current batch of changes."""
        if not self._dirty_rows:
            self.call_next(self._refresh_dirty_rows)
        self._dirty_rows.update(key for key in row_keys if key is not None)

    def _refresh_dirty_rows(self) -> None:
        """Repaint the rows in view updated since the last call, ROWS_PER_FRAME at a time:
        the next ones after that frame, so a key pressed meanwhile waits for one short
        frame, not for every row of a big update (rows out of view need nothing)."""
        rows, self._dirty_rows = self._dirty_rows, set()
        top = int(self.scroll_y)
        bottom = top + self.size.height - (self.header_height if self.show_header else 0)
        in_view = sorted(
            index
            for index in (self._row_locations.get(row_key) for row_key in rows)
            if index is not None and top <= index < bottom
        )
        self._repaint_rows(in_view)

    def _repaint_rows(self, indexes: list[int], held: bool = False) -> None:
        """Repaint a batch of rows, the rest after its frame; each batch first waits (once,
        so keys held down cannot starve the table) for what `hold_repaint` says."""
        wait = 0.0 if held else self.hold_repaint()
        if wait > 0:
            self.set_timer(wait, partial(self._repaint_rows, indexes, True))
            return
        for index in indexes[:ROWS_PER_FRAME]:
            self.refresh_row(index)
        if len(indexes) > ROWS_PER_FRAME:
            self.call_after_refresh(self._repaint_rows, indexes[ROWS_PER_FRAME:])

    def refresh(
        self,
        *regions: Region,
        repaint: bool = True,
        layout: bool = False,
        recompose: bool = False,
    ) -> Self:
        """Widget.refresh, except the whole-table repaint DataTable asks for on a cell update
        (`update_cell` repaints the row instead) or within `deferred_repaint`. There, a
        removed row's layout request goes too: the table's size does not depend on its rows,
        and if its scrollable size changes, setting that asks for a layout anyway (DataTable
        works it out when idle); a screen layout costs tens of milliseconds."""
        whole = not (regions or recompose)
        if (self._deferring and whole) or (self._updating_cell and whole and not layout):
            self._whole_asked = self._whole_asked or self._deferring
            return self
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    # -- per render pass ----------------------------------------------------------------------

    @property
    def rich_style(self) -> Style:
        """The widget's style; within one render pass computed once, not once per line (it
        walks the CSS of every ancestor, and DataTable asks for it on every line)."""
        if self._style_this_pass is not None:
            return self._style_this_pass
        return super().rich_style

    def render_lines(self, crop: Region) -> list[Strip]:
        """Render the lines in `crop`, with styles and settings worked out once for the pass."""
        self._style_this_pass = super().rich_style
        self._settings_this_pass = self._read_settings()
        self._row_styles_this_pass.clear()
        try:
            return super().render_lines(crop)
        finally:
            self._style_this_pass = None
            self._settings_this_pass = None
            self._row_styles_this_pass.clear()

    def _read_settings(self) -> _Settings:
        return _Settings(
            padding=self.cell_padding,
            cursor_type=self.cursor_type,
            show_cursor=self.show_cursor,
            fixed_rows=self.fixed_rows,
            fixed_columns=self.fixed_columns,
            css_foreground=self.cursor_foreground_priority == "css",
            css_background=self.cursor_background_priority == "css",
            width=self.size.width,
            widths=tuple(column.get_render_width(self) for column in self.ordered_columns),
        )

    def _settings(self) -> _Settings:
        """This pass's settings (read now outside a pass)."""
        return self._settings_this_pass or self._read_settings()

    def _get_row_style(self, row_index: int, base_style: Style) -> Style:
        """The row's style (header, fixed or stripe), once per pass for each kind of row."""
        fixed = self._settings().fixed_rows
        kind = -1 if row_index == -1 else (-2 if row_index < fixed else row_index % 2)
        key = (kind, base_style)
        style = self._row_styles_this_pass.get(key)
        if style is None:
            style = super()._get_row_style(row_index, base_style)
            if self._style_this_pass is not None:  # only inside a pass: CSS may change after
                self._row_styles_this_pass[key] = style
        return style

    # -- lines ---------------------------------------------------------------------------------

    def _render_line(self, y: int, x1: int, x2: int, base_style: Style) -> Strip:
        """Line `y` cropped to `x1..x2`, reused while its row renders to the same thing."""
        try:
            row_key, line_no = self._get_offsets(y)
        except LookupError:
            return super()._render_line(y, x1, x2, base_style)  # below the last row
        settings = self._settings()
        # Cells wholly outside x1..x2 are cropped away: the row need not render them.
        self._in_view = _columns_in_view(settings.widths, x1, x2)
        try:
            row = self._render_line_in_row(
                row_key, line_no, base_style, self.cursor_coordinate, self.hover_coordinate
            )
            key = (y, x1, x2, settings.width, base_style)
            cached = self._lines_by_row.get(key)
            if cached is not None and cached[0] is row:
                return cached[1]
            strip = super()._render_line(y, x1, x2, base_style)
        finally:
            self._in_view = None
        self._lines_by_row[key] = (row, strip)
        return strip

    # -- rows ---------------------------------------------------------------------------------

    def _render_line_in_row(
        self,
        row_key: RowKey,
        line_no: int,
        base_style: Style,
        cursor_location: Coordinate,
        hover_location: Coordinate,
    ) -> RowLines:
        """One line of a row, from the content-keyed cache when nothing about it changed."""
        columns = self.ordered_columns
        settings = self._settings()
        location = self._row_locations.get(row_key)
        if row_key is self._header_row_key:
            row_index = -1
            content = tuple(render_key(column.label) for column in columns)
        elif location is not None:
            row_index = location
            data = self._data[row_key]
            content = tuple(render_key(data.get(column.key)) for column in columns)
        else:
            return super()._render_line_in_row(
                row_key, line_no, base_style, cursor_location, hover_location
            )
        simple = self._simple_rows(settings)
        if simple:
            # Only whether the cursor (or the mouse) is on this row changes how it looks.
            cursor: object = cursor_location.row == row_index
            hover: object = hover_location.row == row_index
        else:
            cursor, hover = cursor_location, hover_location
        key = (
            row_index,
            line_no,
            content,
            self._in_view if simple else None,
            settings.widths,
            settings.width,
            base_style,
            cursor,
            hover,
            settings.cursor_type,
            settings.show_cursor,
            self._show_hover_cursor,
            self._pseudo_class_state,
        )
        lines = self._rows_by_content.get(key)
        if lines is None:
            if simple:
                lines = self._assemble_row(
                    row_index, line_no, base_style, cursor_location, hover_location
                )
            else:
                lines = super()._render_line_in_row(
                    row_key, line_no, base_style, cursor_location, hover_location
                )
            self._rows_by_content[key] = lines
        return lines

    def _simple_rows(self, settings: _Settings) -> bool:
        """True for the layout `_assemble_row` handles: a row cursor, no row labels, no
        fixed columns."""
        return (
            settings.cursor_type == "row"
            and not settings.fixed_columns
            and not (self._labelled_row_exists and self.show_row_labels)
        )

    def _assemble_row(
        self,
        row_index: int,
        line_no: int,
        base_style: Style,
        cursor_location: Coordinate,
        hover_location: Coordinate,
    ) -> RowLines:
        """DataTable's row assembly for the simple layout: its cells, then the space to the
        right edge styled as the row."""
        settings = self._settings()
        cursor = cursor_location.row == row_index
        hover = hover_location.row == row_index
        row_style = self._get_row_style(row_index, base_style)
        first, last = self._in_view or (0, len(settings.widths) - 1)
        cells: Lines = []
        for column_index, width in enumerate(settings.widths):
            if first <= column_index <= last:
                cell = self._render_cell(row_index, column_index, row_style, width, cursor, hover)
                cells.append(cell[line_no])
            else:  # out of view: cropped away, only its width matters
                cells.append([Segment(" " * width)])
        table_width = sum(settings.widths) + self._row_label_column_width
        remaining = max(0, settings.width - table_width)
        extend_style, _ = self._get_styles_to_render_cell(
            row_index == -1,
            False,
            False,
            hover,
            cursor,
            settings.show_cursor,
            self._show_hover_cursor,
            False,
            False,
        )
        extend_style = (
            row_style
            + extend_style
            + Style.from_meta({"row": row_index, "column": 0, "out_of_bounds": True})
        )
        cells.append([Segment(" " * remaining, extend_style)])
        return [], cells

    # -- cells --------------------------------------------------------------------------------

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> Lines:
        """The cell's lines, from the content-keyed cache when nothing about it changed."""
        if column_index < 0:  # row labels: rare, left to DataTable
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        column_key = self._column_locations.get_key(column_index)
        row_key = self._row_locations.get_key(row_index) if row_index >= 0 else None
        if column_key is None or (row_index >= 0 and row_key is None):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        value: object
        if row_key is None:
            value, height = self.columns[column_key].label, self.header_height  # the header
        else:
            row = self.rows[row_key]
            value, height = self._data[row_key].get(column_key), row.height
        key = (
            row_index,
            column_index,
            render_key(value),
            base_style,
            width,
            cursor,
            hover,
            self._show_hover_cursor,
            self._pseudo_class_state,
        )
        lines = self._cells_by_content.get(key)
        if lines is None:
            lines = self._render_one_line_cell(
                row_index, column_index, value, height, base_style, width, cursor, hover
            )
            if lines is None:
                lines = super()._render_cell(
                    row_index, column_index, base_style, width, cursor, hover
                )
            self._cells_by_content[key] = lines
        return lines

    def _render_one_line_cell(
        self,
        row_index: int,
        column_index: int,
        value: object,
        height: int,
        base_style: Style,
        width: int,
        cursor: bool,
        hover: bool,
    ) -> Lines | None:
        """DataTable's rendering of a one-line cell whose text fits its column, without
        Rich's general pipeline; None for anything else (wrapping, cropping, justifying
        other than to the right)."""
        if height != 1:
            return None
        if row_index == -1:
            cell = value
        else:
            cell = _EMPTY if value is None else (default_cell_formatter(value, False, 1) or _EMPTY)
        settings = self._settings()
        inner = width - 2 * settings.padding
        if (
            not isinstance(cell, Text)
            or inner < 1
            or cell.justify not in (None, "default", "right")
            or "\n" in cell.plain
            or "\t" in cell.plain
            or cell.cell_len > inner
        ):
            return None
        if cell.justify == "right":  # the numbers: as Rich justifies a line to the right
            cell = cell.copy()
            cell.rstrip()
            cell.pad_left(inner - cell.cell_len)
        is_fixed = row_index != -1 and (
            row_index < settings.fixed_rows or column_index < settings.fixed_columns
        )
        component_style, post_style = self._get_styles_to_render_cell(
            row_index == -1,
            False,
            is_fixed,
            hover,
            cursor,
            settings.show_cursor,
            self._show_hover_cursor,
            settings.css_foreground,
            settings.css_background,
        )
        pre_style = (
            base_style + Style.from_meta({"row": row_index, "column": column_index})
        ) + component_style
        # Segment.apply_style(line, pre_style, post_style), worked out once for the unstyled
        # parts (padding, fill) instead of once per segment; neighbours of the same style
        # are joined, as the line's final simplify() would, so that has less to do.
        plain = pre_style + post_style if post_style else pre_style
        pieces: list[tuple[str, Style]] = []
        if settings.padding:
            pieces.append((" " * settings.padding, plain))
        for text, style, _control in Segment.adjust_line_length(
            _segments(cell, self.app.console), inner, pad=True
        ):
            if not style:
                style = plain
            else:
                styled = pre_style + style
                style = styled + post_style if post_style else styled
            if pieces and pieces[-1][1] is style:
                pieces[-1] = (pieces[-1][0] + text, style)
            else:
                pieces.append((text, style))
        if settings.padding:
            if pieces[-1][1] is plain:
                pieces[-1] = (pieces[-1][0] + " " * settings.padding, plain)
            else:
                pieces.append((" " * settings.padding, plain))
        return [[Segment(text, style) for text, style in pieces]]

    # -- invalidation -------------------------------------------------------------------------

    def _clear_caches(self) -> None:
        """Everything DataTable forgets (cursor shown, padding, stripes...), and ours."""
        super()._clear_caches()
        self._cells_by_content.clear()
        self._rows_by_content.clear()
        self._lines_by_row.clear()

    def notify_style_update(self) -> None:
        """A CSS or theme change: cells and rows must render with the new styles."""
        super().notify_style_update()
        self._cells_by_content.clear()
        self._rows_by_content.clear()
        self._lines_by_row.clear()
