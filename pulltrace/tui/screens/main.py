"""The pull list: header, prompt, table and a one-line status, with k9s's keys."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from msgspec.structs import replace
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Input, Static

from pulltrace import render
from pulltrace.client.store import Query, SortKey
from pulltrace.model import ACTIVE_PHASES
from pulltrace.tui.widgets.header import PullHeader
from pulltrace.tui.widgets.prompt import Prompt
from pulltrace.tui.widgets.pull_table import PullTable

if TYPE_CHECKING:
    from pulltrace.tui.app import PulltraceApp

SORT_BINDINGS: tuple[tuple[str, SortKey], ...] = (
    ("N", "node"),
    ("I", "image"),
    ("S", "speed"),
    ("P", "progress"),
    ("E", "eta"),
    ("A", "age"),
)


class MainScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "filter"),
        Binding("colon", "command", "command"),
        Binding("escape", "escape", "clear filter", show=False),
        Binding("question_mark", "help", "help"),
        Binding("q", "app.quit", "quit"),
        *(Binding(key, f"sort('{name}')", f"sort {name}") for key, name in SORT_BINDINGS),
    ]

    def __init__(self, pulltrace: PulltraceApp) -> None:
        super().__init__(id="main")
        self.pt = pulltrace
        self.flash_message = ""
        self._title = Text()
        self._status_text = Text()

    def compose(self) -> ComposeResult:
        yield PullHeader(self.pt.source.description, self.pt.source.context, self.pt.color)
        yield Prompt(self._names)
        yield PullTable(self.pt.store, self.pt.now, color=self.pt.color, id="pulls")
        yield Static(id="status")

    @property
    def table(self) -> PullTable:
        return self.query_one(PullTable)

    @property
    def header(self) -> PullHeader:
        return self.query_one(PullHeader)

    @property
    def prompt(self) -> Prompt:
        return self.query_one(Prompt)

    def on_mount(self) -> None:
        self.table.focus()
        self.redraw()

    def on_resize(self) -> None:
        if self.table.ensure_layout(self.size.width):
            self.redraw()

    def redraw(self) -> None:
        """Everything from scratch: on start, layout change and a new filter or scope."""
        self.table.ensure_layout(self.size.width)
        self.table.rebuild(self.pt.pull_query)
        self.table.set_sort_marker(self.pt.pull_query)
        self._decorate()

    def update(self, dirty: set[str], structural: bool) -> None:
        """One batch from the app's timer: only changed rows are touched."""
        self.table.sync(self.pt.pull_query, dirty, structural)
        self._decorate()

    def _decorate(self) -> None:
        store, query, table = self.pt.store, self.pt.pull_query, self.table
        self.header.show_totals(store)
        title = Text.assemble(
            (" pulls", "bold #5fd7ff"),
            (f"({query.scope_label()})", "bold #ff87d7"),
            (f"[{table.row_count}] ", "bold #ffffff"),
        )
        if title != self._title:
            table.border_title = self._title = title
        parts = []
        if query.text:
            parts.append(f"</{query.text}>")
        if query.sort is not None:
            parts.append(f"sort:{query.sort}{query.sort_arrow()}")
        subtitle = " ".join(parts) or None
        if table.border_subtitle != subtitle:
            table.border_subtitle = subtitle
        self._status()

    def _status(self) -> None:
        """The crumb, then a message: a command's outcome, or why the highlighted pull failed."""
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append(" <pulls> ", style="bold #000000 on #ffaf00")
        message, style = self.flash_message, "#ffd75f"
        pull_id = self.table.highlighted_pull()
        view = self.pt.store.get(pull_id) if pull_id else None
        if not message and view is not None and view.pull.error:
            message, style = f"✗ {view.pull.error}", render.palette(self.pt.color).bad
        if message:
            text.append(f" {message}", style=style)
        if text != self._status_text:
            self._status_text = text
            self.query_one("#status", Static).update(text, layout=False)

    def flash(self, message: str) -> None:
        self.flash_message = message
        self._status()

    def _names(self, verb: str) -> Iterable[str]:
        pulls = self.pt.store.pulls()
        if verb == "node":
            return {p.node_name for p in pulls}
        if verb == "ns":
            return {pod.namespace for p in pulls for pod in p.pods}
        return ()

    # --- keys -------------------------------------------------------------------------------

    def action_filter(self) -> None:
        self.prompt.open("/", self.pt.pull_query.text)

    def action_command(self) -> None:
        self.prompt.open(":")

    def action_escape(self) -> None:
        """Esc drops the filter, whether typing it or looking at its result; a half-typed
        command is abandoned."""
        if self.prompt.is_open:
            mode = self.prompt.mode
            self._close_prompt()
            if mode == ":":
                return
        if self.pt.pull_query.text:
            self._set_query(replace(self.pt.pull_query, text=""))
        self.flash("")

    def action_help(self) -> None:
        self.pt.action_help()

    def action_sort(self, key: SortKey) -> None:
        query = self.pt.pull_query
        reverse = not query.reverse if query.sort == key else False
        self._set_query(replace(query, sort=key, reverse=reverse), rows_change=False)

    @on(PullTable.Selected, "#pulls")
    def open_detail(self, event: PullTable.Selected) -> None:
        self.pt.open_detail(event.pull_id)

    @on(PullTable.Highlighted, "#pulls")
    def highlighted(self) -> None:
        self._status()

    @on(Input.Changed, "#prompt-input")
    def typing(self, event: Input.Changed) -> None:
        """The filter applies as you type, as in k9s; commands wait for Enter."""
        if self.prompt.mode == "/":
            self._set_query(replace(self.pt.pull_query, text=event.value.strip()))

    @on(Input.Submitted, "#prompt-input")
    def submitted(self, event: Input.Submitted) -> None:
        mode = self.prompt.mode
        self._close_prompt()
        if mode == ":":
            self.run_command(event.value)

    def _close_prompt(self) -> None:
        self.prompt.close()
        self.table.focus()

    def run_command(self, line: str) -> None:
        verb, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        verb = verb.lower()
        query = self.pt.pull_query
        if verb in ("q", "q!", "quit"):
            self.pt.exit()
        elif verb in ("node", "no") and arg:
            self._set_query(replace(query, node=arg))
        elif verb in ("ns", "namespace") and arg:
            self._set_query(replace(query, namespace=arg))
        elif verb == "all":
            self._set_query(replace(query, node="", namespace="", phases=frozenset(), text=""))
        elif verb == "failed":
            self._set_query(replace(query, phases=frozenset({"failed"})))
        elif verb == "active":
            self._set_query(replace(query, phases=ACTIVE_PHASES))
        elif verb in ("help", "?"):
            self.action_help()
        else:
            self.flash(f"unknown command :{line.strip()} (try :node, :ns, :all, :failed, :q)")
            return
        self.flash("")

    def _set_query(self, query: Query, rows_change: bool = True) -> None:
        """A new scope or filter swaps most rows, which one rebuild does faster than many
        removals; a new sort keeps the rows and only reorders them."""
        self.pt.pull_query = query
        if rows_change:
            self.redraw()
            return
        self.table.set_sort_marker(query)
        self.update(set(), structural=True)
