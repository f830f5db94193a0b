"""``:history``: the collector's recent finished pulls, newest first, within the main view's
node and filter. Read once when opened, in a worker thread (the client blocks)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Static
from textual.worker import get_current_worker

from pulltrace import render
from pulltrace.model import FinishedPull
from pulltrace.tui import keys
from pulltrace.tui.screens.summary import SummaryScreen

if TYPE_CHECKING:
    from pulltrace.client.endpoint import Endpoint

ROWS = 500
"""Finished pulls one view reads: a few days of a busy cluster; ``pulltrace history`` pages on."""
COLUMNS = (
    ("when", "FINISHED", 14),
    ("node", "NODE", 14),
    ("image", "IMAGE", 44),
    ("phase", "PHASE", 11),
    ("duration", "DURATION", 8),
    ("size", "SIZE", 11),
    ("speed", "AVG SPEED", 9),
)


def when_text(pull: FinishedPull) -> str:
    """Local month, day and time: the history spans days."""
    if pull.completed_at is None:
        return "-"
    return pull.completed_at.astimezone().strftime("%m-%d %H:%M:%S")


def history_cells(pull: FinishedPull, color: bool) -> tuple[Text, ...]:
    """One finished pull as the table's cells, all through ``render``'s text."""
    p = render.palette(color)
    glyph = render.glyph_cell(pull.phase, color)[0]
    return (
        Text(when_text(pull), style=p.muted),
        Text(render.node_text(pull.node_name)),
        Text.assemble(*render.image_cell(pull, 44, color)),
        Text.assemble(glyph, (f" {pull.phase}", glyph[1])),
        Text(render.duration_text(pull.duration_seconds), justify="right"),
        Text(render.size_text(pull, with_cached=False), justify="right"),
        Text(render.speed_text(pull.average_bytes_per_sec), style=p.active, justify="right"),
    )


def scope_text(node: str, image: str) -> str:
    parts = [f"node={node}" if node else "", f"image~{image}" if image else ""]
    return render.printable(" ".join(p for p in parts if p) or "all")


class HistoryScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = keys.bound_by("history")

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        node: str,
        image: str,
        now: Callable[[], datetime],
        color: bool,
    ) -> None:
        super().__init__(id="history")
        self.endpoint = endpoint
        self.node = node
        self.image = image
        self.now = now
        self.color = color
        self.pulls: list[FinishedPull] = []
        self.loaded = False
        """True once the first answer (or error) is shown: tests and the user wait on it."""

    def compose(self) -> ComposeResult:
        with Vertical(id="history-box") as box:
            box.border_title = Text.assemble(
                (" history", "bold #5fd7ff"),
                (f"({scope_text(self.node, self.image)}) ", "bold #ff87d7"),
            )
            yield DataTable[Text](id="history-table", cursor_type="row", cell_padding=1)
        yield Static(id="history-status")

    def on_mount(self) -> None:
        table: DataTable[Text] = self.query_one("#history-table", DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, width=width, key=key)
        table.focus()
        self.status("loading…")
        self.load()

    def status(self, message: str, style: str = "") -> None:
        text = Text(no_wrap=True, end="")
        text.append(" <pulls> ", style="bold #000000 on #5fd7ff")
        text.append(" <history> ", style="bold #000000 on #ffaf00")
        for key, what in keys.screen_hints("history"):
            text.append(f" <{key}>", style="bold #ff87d7")
            text.append(f" {what}", style="#8a8f98")
        if message:
            text.append(f"  {message}", style=style or "#ffd75f")
        self.query_one("#history-status", Static).update(text)

    @work(thread=True, exclusive=True, group="history-view", exit_on_error=False)
    def load(self) -> None:
        from pulltrace.client.history import HistoryClient
        from pulltrace.errors import PulltraceError

        try:
            page = HistoryClient(self.endpoint).history(
                node=self.node, image=self.image, limit=ROWS
            )
        except PulltraceError as err:
            if not get_current_worker().is_cancelled:
                self.app.call_from_thread(self.failed, str(err))
            return
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self.show, page.pulls, page.continue_ is not None)

    def failed(self, error: str) -> None:
        self.loaded = True
        self.status(f"✗ {render.message_text(error)}", render.palette(self.color).bad)

    def show(self, pulls: list[FinishedPull], more: bool) -> None:
        table: DataTable[Text] = self.query_one("#history-table", DataTable)
        table.clear()
        self.pulls = pulls
        for n, pull in enumerate(pulls):
            table.add_row(*history_cells(pull, self.color), key=str(n))
        self.loaded = True
        box = self.query_one("#history-box")
        box.border_subtitle = f" {len(pulls)}{'+' if more else ''} finished "
        if not pulls:
            self.status("no finished pulls recorded in this scope")
        else:
            newer = " (the newest; pulltrace history pages on)" if more else ""
            self.status(f"{render.plural(len(pulls), 'pull')}{newer}", "#8a8f98")

    def highlighted(self) -> FinishedPull | None:
        table: DataTable[Text] = self.query_one("#history-table", DataTable)
        row = table.cursor_row
        return self.pulls[row] if 0 <= row < len(self.pulls) else None

    @on(DataTable.RowSelected, "#history-table")
    def selected(self) -> None:
        self.action_summary()

    def action_summary(self) -> None:
        pull = self.highlighted()
        if pull is not None:
            self.app.push_screen(SummaryScreen(pull, now=self.now, color=self.color))
