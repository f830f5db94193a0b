"""The main pull table: one row per pull, keyed by pull id, updated cell by cell.

Rebuilding a DataTable of 1 000 rows twice a second costs more than a frame; so rows keep their
key for life, each sync diffs the cells of changed pulls against what the row already shows and
calls ``update_cell`` only for those that differ, and rows are added, removed or reordered only
when pulls come, go, change group or the sort order moves.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from pulltrace import render
from pulltrace.client.store import ClientStore, Query
from pulltrace.client.store import order as order_pulls
from pulltrace.tui.columns import Layout, clocked, layout, row_cells

_TIME_SORTS = frozenset({"speed", "progress", "eta"})
"""Sorts whose order moves as pulls progress, so every sync may reorder."""
SORT_COLUMNS = {
    "node": "node",
    "image": "image",
    "speed": "speed",
    "progress": "progress",
    "eta": "eta",
}


class KeyedText(Text):
    """A cell that knows its row's pull id, so that ``DataTable.sort`` (which hands the key
    function cell values, not row keys) can apply an order computed by the store."""

    def __init__(self, pull_id: str, text: str, style: str) -> None:
        super().__init__(text, style=style, end="")
        self.pull_id = pull_id


def to_text(cell: render.Cell) -> Text:
    return Text.assemble(*cell, end="")


class PullTable(DataTable[Text]):
    def __init__(self, *, color: bool, id: str | None = None) -> None:
        super().__init__(
            id=id,
            cursor_type="row",
            zebra_stripes=False,
            cell_padding=1,
            cursor_foreground_priority="renderable",
        )
        self.color = color
        self.lay: Layout | None = None
        self.shown: dict[str, dict[str, render.Cell]] = {}
        """Cells each row currently displays, to diff against."""
        self.order: list[str] = []
        self._clocked: set[str] = set()
        self.cell_updates = 0
        """``update_cell`` calls so far: the load test counts them."""

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

    def sync(
        self,
        store: ClientStore,
        query: Query,
        now: datetime,
        dirty: set[str],
        structural: bool,
    ) -> None:
        """Brings the rows in line with the store, touching only what changed."""
        lay = self.lay
        if lay is None:
            return
        wanted = self.order
        if structural or query.sort in _TIME_SORTS:
            wanted = [p.id for p in order_pulls(store.pulls(), query, now)]
        wanted_set = set(wanted)
        highlighted = self._highlighted_key()
        for gone in [k for k in self.shown if k not in wanted_set]:
            self.remove_row(gone)
            del self.shown[gone]
            self._clocked.discard(gone)
        for pull_id in wanted:
            view = store.get(pull_id)
            if view is None:
                continue
            pull = view.pull
            if pull_id not in self.shown:
                cells = row_cells(pull, lay, now, self.color)
                self.add_row(*self._texts(pull_id, cells), key=pull_id)
                self.shown[pull_id] = cells
            elif pull_id in dirty or pull_id in self._clocked:
                self._update_row(pull_id, row_cells(pull, lay, now, self.color))
            if clocked(pull):
                self._clocked.add(pull_id)
            else:
                self._clocked.discard(pull_id)
        if wanted != self.order:
            rank = {key: i for i, key in enumerate(wanted)}
            self.sort("state", key=lambda cell: rank.get(_pull_id_of(cell), len(rank)))
            self.order = list(wanted)
        if highlighted is not None and highlighted in self.shown:
            index = self.get_row_index(highlighted)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False, scroll=False)

    def rebuild(self, store: ClientStore, query: Query, now: datetime) -> None:
        """Starts from an empty table: after a layout change or a new query, when most rows
        change anyway."""
        self.clear()
        self.shown.clear()
        self._clocked.clear()
        self.order = []
        self.sync(store, query, now, set(), structural=True)

    def set_sort_marker(self, query: Query) -> None:
        if self.lay is None:
            return
        arrow = query.sort_arrow()
        for column in self.lay.columns:
            label = column.label
            if query.sort is not None and SORT_COLUMNS.get(query.sort) == column.key:
                label = f"{label}{arrow}"
            self.columns[ColumnKey(column.key)].label = Text(label)
        self.refresh()

    def highlighted_pull(self) -> str | None:
        return self._highlighted_key()

    def _highlighted_key(self) -> str | None:
        if not 0 <= self.cursor_row < self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def _texts(self, pull_id: str, cells: dict[str, render.Cell]) -> list[Text]:
        texts: list[Text] = []
        for key, cell in cells.items():
            if key == "state":
                (glyph, style), *_ = cell
                texts.append(KeyedText(pull_id, glyph, style))
            else:
                texts.append(to_text(cell))
        return texts

    def _update_row(self, pull_id: str, cells: dict[str, render.Cell]) -> None:
        before = self.shown[pull_id]
        for key, cell in cells.items():
            if before.get(key) == cell:
                continue
            if key == "state":
                (glyph, style), *_ = cell
                value: Text = KeyedText(pull_id, glyph, style)
            else:
                value = to_text(cell)
            self.update_cell(pull_id, key, value)
            self.cell_updates += 1
        self.shown[pull_id] = cells


def _pull_id_of(cell: Any) -> str:
    return cell.pull_id if isinstance(cell, KeyedText) else ""
