"""The main pull table: one line per pull, keyed by pull id, drawn through Textual's line API.

A thousand pulls changing twice a second is the load this is built for, and a general table
widget pays per visible cell on every frame whatever changed. Here each row keeps the cells it
shows and one rendered strip; a batch recomputes only the rows the store marked dirty that are
on screen, rebuilds the strip of those whose cells differ, and repaints just their lines. Rows
out of sight are marked stale and caught up when they scroll into view, so a batch costs what
the screen shows, not what the cluster holds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from pulltrace import render
from pulltrace.client.store import ClientStore, Query
from pulltrace.client.store import order as order_pulls
from pulltrace.tui import keys
from pulltrace.tui.columns import PADDING, Layout, clocked, layout, row_cells
from pulltrace.tui.history import HistoryFacts

_TIME_SORTS = frozenset({"speed", "progress", "eta"})
"""Sorts whose order moves as pulls progress, so every sync may reorder."""
SORTED_COLUMNS = frozenset({"node", "image", "speed", "progress", "eta"})
"""Sort keys with a column of their own to carry the arrow (age has none)."""
HEADER_HEIGHT = 1

Cells = dict[str, render.Cell]


@lru_cache(maxsize=1024)
def _over(base: Style, name: str) -> Style:
    """A cell's style over the row's: the cell's colours win, the row fills in the rest."""
    return base + Style.parse(name)


def row_strip(lay: Layout, cells: Cells, base: Style) -> Strip:
    """One row: each cell padded and cut to its column, over ``base``. Neighbours with the same
    style are joined as they are laid down, so a row is a handful of segments, not dozens."""
    texts: list[str] = []
    styles: list[Style] = []
    pad = " " * PADDING
    for column in lay.columns:
        pieces = [(pad, base)]
        room = column.width
        for text, name in cells[column.key]:
            width = cell_len(text)
            if width > room:
                text, width = set_cell_size(text, room), room
            if width:
                pieces.append((text, _over(base, name) if name else base))
                room -= width
        pieces.append((" " * room + pad, base))
        for text, style in pieces:
            if styles and styles[-1] is style:
                texts[-1] += text
            else:
                texts.append(text)
                styles.append(style)
    return Strip(map(Segment, texts, styles), table_width(lay))


def table_width(lay: Layout) -> int:
    return sum(column.width + 2 * PADDING for column in lay.columns)


class _RowMessage(Message):
    """A message about one row, which ``@on(..., "#id")`` routes by the table it came from."""

    def __init__(self, table: PullTable, pull_id: str | None) -> None:
        super().__init__()
        self.table = table
        self.pull_id = pull_id

    @property
    def control(self) -> PullTable:
        return self.table


class PullTable(ScrollView, can_focus=True):
    """A header line, then one line per pull, with a row cursor. Enter (or a click on the
    highlighted row) posts ``Selected``; moving the cursor posts ``Highlighted``."""

    BINDINGS: ClassVar[list[BindingType]] = keys.bound_by("table")
    COMPONENT_CLASSES: ClassVar[set[str]] = {"pull-table--header", "pull-table--cursor"}

    class Highlighted(_RowMessage):
        """The cursor moved to ``pull_id`` (None: the table is empty)."""

    class Selected(_RowMessage):
        """Enter on ``pull_id``."""

        pull_id: str

    def __init__(
        self,
        store: ClientStore,
        now: Callable[[], datetime],
        *,
        color: bool,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.store = store
        self.now = now
        self.color = color
        self.lay: Layout | None = None
        self.labels: list[str] = []
        self.order: list[str] = []
        """Pull ids in display order: row ``i`` is ``order[i]``."""
        self.index: dict[str, int] = {}
        self.cursor_row = 0
        self.shown: dict[str, Cells] = {}
        """Cells each row displays, for rows drawn at least once."""
        self.stale: set[str] = set()
        """Rows whose pull changed while they were out of sight."""
        self.row_updates = 0
        """Rows redrawn because their cells changed: the load test and benchmark count them."""
        self._clocked: set[str] = set()
        self._strips: dict[str, Strip] = {}
        """Each drawn row over the widget's style, until its cells or that style change."""
        self.facts: HistoryFacts | None = None
        """The collector's updates and repository statistics: badges and history ETAs."""
        self._base = Style.null()
        self._cursor_style = Style.null()
        self._header_style = Style.null()

    @property
    def row_count(self) -> int:
        return len(self.order)

    def highlighted_pull(self) -> str | None:
        if 0 <= self.cursor_row < len(self.order):
            return self.order[self.cursor_row]
        return None

    # --- what is shown ----------------------------------------------------------------------

    def ensure_layout(self, width: int) -> bool:
        """Forgets every drawn row when the terminal width changes the columns; True if so."""
        lay = layout(width)
        if lay == self.lay:
            return False
        self.lay = lay
        self.labels = [column.label for column in lay.columns]
        self.shown.clear()
        self._strips.clear()
        self.stale.clear()
        self._clocked.clear()
        self._resize_virtual()
        self.refresh()
        return True

    def set_sort_marker(self, query: Query) -> None:
        if self.lay is None:
            return
        arrow = query.sort_arrow()
        self.labels = [
            f"{c.label}{arrow}" if query.sort == c.key and c.key in SORTED_COLUMNS else c.label
            for c in self.lay.columns
        ]
        self.refresh(Region(0, 0, self.size.width, HEADER_HEIGHT))

    def rebuild(self, query: Query) -> None:
        """A new scope or filter: rows in a fresh order, cursor and view back at the top. Rows
        that stay keep what they drew."""
        if self.lay is None:
            return
        self.scroll_to(0, 0, animate=False, force=True)
        wanted = [p.id for p in order_pulls(self.store.pulls(), query, self.now())]
        self.cursor_row = 0
        self._reorder(wanted, follow=False)

    def sync(self, query: Query, dirty: set[str], structural: bool) -> None:
        """Brings the rows in line with the store, touching only what changed and is seen."""
        if self.lay is None:
            return
        if structural or query.sort in _TIME_SORTS:
            wanted = [p.id for p in order_pulls(self.store.pulls(), query, self.now())]
            if wanted != self.order:
                self._reorder(wanted, follow=True)
        self.stale |= (dirty | self._clocked) & self.index.keys()
        self.catch_up()

    def set_facts(self, facts: HistoryFacts) -> None:
        """New badges and history ETAs may touch any row: all are due, those on screen now."""
        self.facts = facts
        self.stale |= self.index.keys()
        self.catch_up()

    def catch_up(self) -> None:
        """Redraws the stale rows on screen, as one repaint per run of adjacent lines."""
        if not self.stale:
            return
        changed = [
            row
            for row in self._visible_rows()
            if self.order[row] in self.stale and self.refresh_row(self.order[row])
        ]
        runs: list[tuple[int, int]] = []
        for row in changed:
            if runs and runs[-1][1] == row:
                runs[-1] = (runs[-1][0], row + 1)
            else:
                runs.append((row, row + 1))
        if runs:
            self.refresh(*(self._lines(start, end) for start, end in runs))

    def refresh_row(self, pull_id: str) -> bool:
        """Recomputes one row's cells from the store; True if they differ from what it shows
        (its strip is then rebuilt on the next paint)."""
        self.stale.discard(pull_id)
        view = self.store.get(pull_id)
        if view is None or self.lay is None:
            return False
        if clocked(view.pull):
            self._clocked.add(pull_id)
        else:
            self._clocked.discard(pull_id)
        cells = row_cells(view.pull, self.lay, self.now(), self.color, self.facts)
        if self.shown.get(pull_id) == cells:
            return False
        self.shown[pull_id] = cells
        self._strips.pop(pull_id, None)
        self.row_updates += 1
        return True

    def _reorder(self, wanted: list[str], follow: bool) -> None:
        """New row order. Following, the cursor stays on its pull, or on its line if the pull
        left; otherwise on its line."""
        highlighted = self.highlighted_pull()
        self.order = wanted
        self.index = {pull_id: row for row, pull_id in enumerate(wanted)}
        for gone in [k for k in self.shown if k not in self.index]:
            del self.shown[gone]
            self._strips.pop(gone, None)
        self.stale &= self.index.keys()
        self._clocked &= self.index.keys()
        self._resize_virtual()
        row = self.index.get(highlighted, self.cursor_row) if follow and highlighted else None
        self.cursor_row = max(0, min(self.cursor_row if row is None else row, len(wanted) - 1))
        self._scroll_to_cursor()
        self.refresh()
        if self.highlighted_pull() != highlighted:
            self.post_message(self.Highlighted(self, self.highlighted_pull()))

    def _resize_virtual(self) -> None:
        width = table_width(self.lay) if self.lay is not None else 0
        self.virtual_size = Size(width, len(self.order) + HEADER_HEIGHT)

    def _visible_rows(self) -> range:
        top = round(self.scroll_y)
        return range(top, min(len(self.order), top + self.size.height - HEADER_HEIGHT))

    def _lines(self, start: int, end: int) -> Region:
        """The region, in the viewport, of rows ``start`` to ``end`` (exclusive)."""
        y = start - round(self.scroll_y) + HEADER_HEIGHT
        return Region(0, y, max(self.virtual_size.width, self.size.width), end - start)

    # --- drawing ----------------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        """Styles are read once a paint. Row strips carry the widget's style (focus changes
        it), so a new one redraws them."""
        base = self.rich_style
        if base != self._base:
            self._base = base
            self._strips.clear()
        self._cursor_style = self.get_component_rich_style("pull-table--cursor")
        self._header_style = self.get_component_rich_style("pull-table--header")
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        if y < HEADER_HEIGHT:
            strip = self._header_strip()
        else:
            row = scroll_y + y - HEADER_HEIGHT
            if row >= len(self.order):
                return Strip.blank(self.size.width, self._base)
            strip = self._row_strip(row)
        if scroll_x:
            strip = strip.crop(scroll_x, scroll_x + self.size.width)
        return strip

    def _header_strip(self) -> Strip:
        style = self._header_style
        if self.lay is None:
            return Strip.blank(self.size.width, style)
        text = "".join(
            " " * PADDING + render.fit(label, c.width).ljust(c.width) + " " * PADDING
            for c, label in zip(self.lay.columns, self.labels, strict=True)
        )
        return Strip([Segment(text, style)]).extend_cell_length(self.size.width, style)

    def _row_strip(self, row: int) -> Strip:
        pull_id = self.order[row]
        if pull_id in self.stale or pull_id not in self.shown:
            self.refresh_row(pull_id)
        cells = self.shown.get(pull_id)
        if cells is None or self.lay is None:
            return Strip.blank(self.size.width, self._base)
        if row == self.cursor_row:
            # Highlighted edge to edge, not just across the columns.
            style = self._base + self._cursor_style
            return row_strip(self.lay, cells, style).extend_cell_length(self.size.width, style)
        strip = self._strips.get(pull_id)
        if strip is None:
            strip = self._strips[pull_id] = row_strip(self.lay, cells, self._base)
        return strip

    # --- keys and mouse ---------------------------------------------------------------------

    def move_cursor(self, row: int) -> None:
        """Moves the highlight, repainting only the lines it leaves and enters, and keeps it
        in view."""
        row = max(0, min(row, len(self.order) - 1))
        if row == self.cursor_row:
            self._scroll_to_cursor()
            return
        before, self.cursor_row = self.cursor_row, row
        self._scroll_to_cursor()
        self.refresh(self._lines(before, before + 1), self._lines(row, row + 1))
        self.post_message(self.Highlighted(self, self.highlighted_pull()))

    def _scroll_to_cursor(self) -> None:
        top = round(self.scroll_y)
        rows = max(1, self.size.height - HEADER_HEIGHT)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, force=True)
        elif self.cursor_row >= top + rows:
            self.scroll_to(y=self.cursor_row - rows + 1, animate=False, force=True)

    def _page(self) -> int:
        return max(1, self.size.height - HEADER_HEIGHT)

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor_row + 1)

    def action_page_up(self) -> None:
        """As a pager does: the view moves a page and the cursor with it."""
        self.scroll_relative(y=-self._page(), animate=False, force=True)
        self.move_cursor(self.cursor_row - self._page())

    def action_page_down(self) -> None:
        self.scroll_relative(y=self._page(), animate=False, force=True)
        self.move_cursor(self.cursor_row + self._page())

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(len(self.order) - 1)

    def action_select(self) -> None:
        pull_id = self.highlighted_pull()
        if pull_id is not None:
            self.post_message(self.Selected(self, pull_id))

    def on_click(self, event: events.Click) -> None:
        """A click highlights a row; a click on the highlighted row opens it."""
        offset = event.get_content_offset(self)
        if offset is None or offset.y < HEADER_HEIGHT:
            return
        row = round(self.scroll_y) + offset.y - HEADER_HEIGHT
        if row >= len(self.order):
            return
        event.stop()
        if row == self.cursor_row:
            self.action_select()
        else:
            self.move_cursor(row)
