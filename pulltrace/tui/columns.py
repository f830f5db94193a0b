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
from pulltrace.rollup import history_eta
from pulltrace.tui.history import HistoryFacts

PADDING = 1
"""Cells of padding on each side of every column."""
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


IMAGE_MAX = 46
"""Past this (or a third of the width) the image column only pads; the room is worth more to
sizes and pod names."""
BADGE = " ↑"
"""After the image of a row whose image has an unacknowledged update (see ``:updates``)."""
CACHED_EXTRA = 15
"""What the size column needs beyond ``412M/1.2G`` to add `` (80.0M cached)``."""


def layout(width: int) -> Layout:
    """Narrow terminals drop the size column (the detail screen has it) and shorten the bar;
    wider ones give the image its room first, then the cached share, then pod names."""
    wide = width >= 150
    medium = width >= 110
    bar = 16 if wide else (8 if medium else 5)
    size = 11 if medium else 0
    pods = 16 if medium else 11
    node = 14 if wide else (10 if medium else 9)

    def columns(image: int, size: int, pods: int) -> tuple[Column, ...]:
        chosen = [
            Column("state", " ", 1),
            Column("image", "IMAGE", image),
            Column("node", "NODE", node),
            Column("progress", "PROGRESS", bar + 5),
        ]
        if size:
            chosen.append(Column("size", "SIZE", size))
        chosen += [
            Column("speed", "SPEED", 7),
            Column("eta", "ETA", 7),
            Column("pods", "PODS", pods),
        ]
        return tuple(chosen)

    used = sum(c.width + 2 * PADDING for c in columns(0, size, pods)) + CHROME
    image = max(14, min(width - used, IMAGE_MAX, width // 3))
    extra = width - used - image
    with_cached = medium and extra >= CACHED_EXTRA
    if with_cached:
        size += CACHED_EXTRA
        extra -= CACHED_EXTRA
    return Layout(columns(image, size, pods + max(0, extra)), bar, with_cached)


def row_cells(
    pull: PullStatus,
    lay: Layout,
    now: datetime,
    color: bool,
    facts: HistoryFacts | None = None,
) -> dict[str, render.Cell]:
    """Every visible cell of one pull's row, keyed by column. Finished pulls are dimmed except
    their glyph and, for a failure, its reason: those are what a glance at history is for.
    With the collector's history (``facts``), an image with a pending update gets a badge, and
    a pull whose bytes do not flow yet an ETA from earlier pulls of its repository."""
    cells: dict[str, render.Cell] = {}
    badge = facts is not None and facts.has_update(pull)
    for column in lay.columns:
        key = column.key
        if key == "state":
            cell = render.glyph_cell(pull.phase, color)
        elif key == "image":
            cell = render.image_cell(pull, column.width - (len(BADGE) if badge else 0), color)
        elif key == "node":
            cell = render.node_cell(pull, column.width)
        elif key == "progress":
            cell = render.pull_progress_cell(pull, lay.bar_width, color)
        elif key == "size":
            cell = render.size_cell(pull, lay.size_with_cached, color)
        elif key == "speed":
            cell = render.speed_cell(pull.bytes_per_sec, pull.phase in ACTIVE_PHASES, color)
        elif key == "eta" and pull.phase == "failed":
            cell = render.failure_cell(pull, color)  # why, rather than how long it took
        elif key == "eta":
            cell = eta_cell(pull, now, color, facts, full=False)
        else:
            cell = render.pods_cell(pull, column.width, color)
        keep = pull.phase in ACTIVE_PHASES or key == "state"
        keep |= pull.phase == "failed" and key == "eta"
        cells[key] = cell if keep else render.dimmed(cell)
    if badge and "image" in cells:
        # Bright even on a finished row: an update is news whatever the pull's state.
        cells["image"] = (*cells["image"], (BADGE, render.palette(color).warn))
    return cells


def eta_cell(
    pull: PullStatus, now: datetime, color: bool, facts: HistoryFacts | None, *, full: bool
) -> render.Cell:
    """The time left, from earlier pulls of the repository while the pull's own is unknown."""
    group = facts.group(pull) if facts is not None else None
    left = history_eta(pull, group, now)
    if left is None or group is None:
        return render.timing_cell(pull, now, color)
    return render.history_eta_cell(left, group.count, full, color)


def clocked(pull: PullStatus) -> bool:
    """Whether the row shows time passing (elapsed without an ETA), so must redraw on a clock."""
    return pull.phase in ACTIVE_PHASES and pull.eta_seconds is None
