"""Which columns the pull table shows at a given width, and each row's cells.

Pure and free of Textual so that the layout at 80 and at 160 columns, and every cell, can be
tested without a terminal. Widths are fixed per layout rather than fitted to content: a live
table whose columns resize as numbers change is unreadable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pulltrace import render
from pulltrace.model import ACTIVE_PHASES, PullStatus

PADDING = 1
"""Cells of padding on each side of every column (DataTable's ``cell_padding``)."""
CHROME = 3
"""Table border (2) and the vertical scrollbar (1)."""


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int


@dataclass(frozen=True, slots=True)
class Layout:
    columns: tuple[Column, ...]
    bar_width: int
    size_with_cached: bool

    def width_of(self, key: str) -> int:
        return next(c.width for c in self.columns if c.key == key)


def layout(width: int) -> Layout:
    """Narrow terminals drop the size column (the detail screen has it) and shorten the bar;
    wide ones spend the room on the image, the cached share and pod names."""
    wide = width >= 150
    medium = width >= 110
    bar = 16 if wide else (8 if medium else 5)
    fixed = [
        Column("state", " ", 1),
        Column("node", "NODE", 14 if wide else (10 if medium else 9)),
        Column("progress", "PROGRESS", bar + 5),
    ]
    if medium:
        fixed.append(Column("size", "SIZE", 25 if wide else 11))
    fixed += [
        Column("speed", "SPEED", 7),
        Column("eta", "ETA", 7),
        Column("pods", "PODS", 32 if wide else (16 if medium else 11)),
    ]
    used = sum(c.width + 2 * PADDING for c in fixed) + 2 * PADDING + CHROME
    image = Column("image", "IMAGE", max(14, width - used))
    return Layout((fixed[0], image, *fixed[1:]), bar, wide)


def row_cells(pull: PullStatus, lay: Layout, now: datetime, color: bool) -> dict[str, render.Cell]:
    """Every visible cell of one pull's row, keyed by column. Finished pulls are dimmed except
    their glyph and, for a failure, its reason: those are what a glance at history is for."""
    cells: dict[str, render.Cell] = {}
    for column in lay.columns:
        key = column.key
        if key == "state":
            cell = render.glyph_cell(pull.phase, color)
        elif key == "image":
            cell = render.image_cell(pull, column.width, color)
        elif key == "node":
            cell = ((render.fit(pull.node_name, column.width), ""),)
        elif key == "progress":
            cell = render.pull_progress_cell(pull, lay.bar_width, color)
        elif key == "size":
            cell = render.size_spans(pull, lay.size_with_cached, color)
        elif key == "speed":
            cell = render.speed_cell(pull.bytes_per_sec, pull.phase in ACTIVE_PHASES, color)
        elif key == "eta":
            cell = render.eta_or_elapsed_cell(pull, now, color)
        else:
            cell = render.pods_spans(pull, column.width, color)
        keep = pull.phase in ACTIVE_PHASES or key == "state"
        keep |= pull.phase == "failed" and key == "eta"
        cells[key] = cell if keep else render.dimmed(cell)
    return cells


def clocked(pull: PullStatus) -> bool:
    """Whether the row shows time passing (elapsed without an ETA), so must redraw on a clock."""
    return pull.phase in ACTIVE_PHASES and pull.eta_seconds is None
