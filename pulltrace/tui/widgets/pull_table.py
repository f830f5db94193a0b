"""The main pull table: one row per pull, keyed by pull id, updated cell by cell.

Rebuilding a DataTable of 1 000 rows twice a second costs more than a frame; so rows keep their
key for life, each sync diffs the cells of changed pulls against what the row already shows and
calls ``update_cell`` only for those that differ, and rows are added, removed or reordered only
when pulls come, go, change group or the sort order moves. Rows out of sight are not redrawn at
all: they are marked stale and caught up the moment they scroll into view, so a batch costs
what the screen shows, not what the cluster holds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from pulltrace import render
from pulltrace.client.store import ClientStore, Query
from pulltrace.client.store import order as order_pulls
from pulltrace.tui.columns import Layout, clocked, layout, row_cells

MARGIN = 3
"""Rows beyond each edge of the viewport kept current, so a short scroll shows no stale row."""
_TIME_SORTS = frozenset({"speed", "progress", "eta"})
"""Sorts whose order moves as pulls progress, so every sync may reorder."""
SORTED_COLUMNS = frozenset({"node", "image", "speed", "progress", "eta"})
"""Sort keys with a column of their own to carry the arrow (age has none)."""


class SpanCell:
    """A cell rendered once, when it changes: its segments are built and its styles parsed up
    front, which halves what the DataTable pays per visible cell on every frame compared with a
    ``Text``. It also carries its row's pull id, so that ``DataTable.sort`` (which hands its key
    function cell values, not row keys) can apply an order computed by the store."""

    __slots__ = ("pull_id", "segments", "width")

    def __init__(self, cell: render.Cell, pull_id: str = "") -> None:
        self.segments = [Segment(text, _style(style)) for text, style in cell]
        self.width = sum(cell_len(text) for text, _ in cell)
        self.pull_id = pull_id

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        return self.segments

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(self.width, self.width)


@lru_cache(maxsize=256)
def _style(name: str) -> Style:
    return Style.parse(name) if name else Style.null()


class PullTable(DataTable[SpanCell]):
    def __init__(
        self,
        store: ClientStore,
        now: Callable[[], datetime],
        *,
        color: bool,
        id: str | None = None,
    ) -> None:
        super().__init__(
            id=id,
            cursor_type="row",
            zebra_stripes=False,
            cell_padding=1,
            cursor_foreground_priority="renderable",
        )
        self.store = store
        self.now = now
        self.color = color
        self.lay: Layout | None = None
        self.shown: dict[str, dict[str, render.Cell]] = {}
        """Cells each row currently displays, to diff against."""
        self.order: list[str] = []
        self._clocked: set[str] = set()
        self.stale: set[str] = set()
        """Rows whose pull changed while they were out of sight."""
        self.cell_updates = 0
        """``update_cell`` calls so far: the load test counts them."""
        self._cell_cache: LRUCache[tuple[object, ...], list[list[Segment]]] = LRUCache(4096)

    def ensure_layout(self, width: int) -> bool:
        """Re-creates columns when the terminal width changes the layout; True if it did."""
        lay = layout(width)
        if lay == self.lay:
            return False
        self.lay = lay
        self.clear(columns=True)
        self.shown.clear()
        self.order = []
        for column in lay.columns:
            self.add_column(column.label, width=column.width, key=column.key)
        return True

    def sync(self, query: Query, dirty: set[str], structural: bool) -> None:
        """Brings the rows in line with the store, touching only what changed and is seen."""
        lay, store, now = self.lay, self.store, self.now()
        if lay is None:
            return
        wanted = self.order
        if structural or query.sort in _TIME_SORTS:
            wanted = [p.id for p in order_pulls(store.pulls(), query, now)]
        wanted_set = set(wanted)
        highlighted = self.highlighted_pull()
        for gone in [k for k in self.shown if k not in wanted_set]:
            self.remove_row(gone)
            del self.shown[gone]
            self._clocked.discard(gone)
            self.stale.discard(gone)
        added: set[str] = set()
        if structural:
            for pull_id in wanted:
                view = store.get(pull_id)
                if view is not None and pull_id not in self.shown:
                    cells = row_cells(view.pull, lay, now, self.color)
                    self.add_row(*self._texts(pull_id, cells), key=pull_id)
                    self.shown[pull_id] = cells
                    added.add(pull_id)
                    if clocked(view.pull):
                        self._clocked.add(pull_id)
        self.stale |= ((dirty - added) | self._clocked) & self.shown.keys()
        if wanted != self.order:
            rank = {key: i for i, key in enumerate(wanted)}
            self.sort("state", key=lambda cell: rank.get(_pull_id_of(cell), len(rank)))
            self.order = list(wanted)
        if highlighted is not None and highlighted in self.shown:
            index = self.get_row_index(highlighted)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False, scroll=False)
        self.catch_up()

    def catch_up(self) -> None:
        """Redraws the stale rows that are (nearly) on screen."""
        if not self.stale or self.lay is None:
            return
        lay, now = self.lay, self.now()
        top = int(self.scroll_y)
        first = max(0, top - MARGIN)
        last = min(self.row_count, top + self.scrollable_content_region.height + MARGIN)
        for index in range(first, last):
            pull_id = self.coordinate_to_cell_key(Coordinate(index, 0)).row_key.value
            if pull_id is None or pull_id not in self.stale:
                continue
            self.stale.discard(pull_id)
            view = self.store.get(pull_id)
            if view is None:
                continue
            self._update_row(pull_id, row_cells(view.pull, lay, now, self.color))
            if clocked(view.pull):
                self._clocked.add(pull_id)
            else:
                self._clocked.discard(pull_id)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.catch_up()

    def rebuild(self, query: Query) -> None:
        """Starts from an empty table: after a layout change or a new query, when most rows
        change anyway."""
        self.clear()
        self.shown.clear()
        self._clocked.clear()
        self.stale.clear()
        self.order = []
        self.sync(query, set(), structural=True)

    def set_sort_marker(self, query: Query) -> None:
        if self.lay is None:
            return
        arrow = query.sort_arrow()
        for column in self.lay.columns:
            label = column.label
            if query.sort == column.key and column.key in SORTED_COLUMNS:
                label = f"{label}{arrow}"
            self.columns[ColumnKey(column.key)].label = Text(label)
        self.refresh()

    def highlighted_pull(self) -> str | None:
        if not 0 <= self.cursor_row < self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        """DataTable keys its render caches on a counter that every ``update_cell`` bumps, so
        one changed cell re-renders every visible cell. Keyed on the cell object instead (a new
        one per change), unchanged cells come from this cache and a frame renders only what
        changed."""
        if row_index < 0 or column_index < 0:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        cell = self.get_cell_at(Coordinate(row_index, column_index))
        key = (cell, row_index, column_index, base_style, width, cursor, hover, self.has_focus)
        lines = self._cell_cache.get(key)
        if lines is None:
            if isinstance(cell, SpanCell):
                lines = self._render_span_cell(
                    cell, row_index, column_index, base_style, width, cursor, hover
                )
            else:
                lines = super()._render_cell(
                    row_index, column_index, base_style, width, cursor, hover
                )
            self._cell_cache[key] = lines
        return lines

    def _render_span_cell(
        self,
        cell: SpanCell,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool,
        hover: bool,
    ) -> list[list[Segment]]:
        """What DataTable draws for a one-line cell (padding, the cell cropped or padded to
        the column, cursor and hover styles over it) without a Rich render pass per cell."""
        fixed = row_index < self.fixed_rows or column_index < self.fixed_columns
        component, post = self._get_styles_to_render_cell(
            False,
            False,
            fixed,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        meta = Style.from_meta({"row": row_index, "column": column_index})
        pad = Segment(" " * self.cell_padding)
        inner = Segment.adjust_line_length(cell.segments, max(0, width - 2 * self.cell_padding))
        line = [pad, *inner, pad]
        return [list(Segment.apply_style(line, base_style + meta + component, post))]

    def _texts(self, pull_id: str, cells: dict[str, render.Cell]) -> list[SpanCell]:
        return [SpanCell(cell, pull_id) for cell in cells.values()]

    def _update_row(self, pull_id: str, cells: dict[str, render.Cell]) -> None:
        before = self.shown[pull_id]
        for key, cell in cells.items():
            if before.get(key) != cell:
                self.update_cell(pull_id, key, SpanCell(cell, pull_id))
                self.cell_updates += 1
        self.shown[pull_id] = cells


def _pull_id_of(cell: Any) -> str:
    return cell.pull_id if isinstance(cell, SpanCell) else ""
