"""The pull list: header, prompt, table and a one-line status, with k9s's keys."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from msgspec.structs import replace
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import Input, Static

from pulltrace import render
from pulltrace.client.store import ClientStore, Query, SortKey
from pulltrace.model import ACTIVE_PHASES
from pulltrace.tui import keys
from pulltrace.tui.history import HistoryFacts
from pulltrace.tui.messages import HistoryChanged, LinkChanged, StoreChanged
from pulltrace.tui.screens.detail import DetailScreen
from pulltrace.tui.widgets.header import PullHeader
from pulltrace.tui.widgets.prompt import Prompt
from pulltrace.tui.widgets.pull_table import PullTable

if TYPE_CHECKING:
    from pulltrace.client.endpoint import Endpoint

NEEDS_COLLECTOR = "needs a collector: this source keeps no history (try --server, or --demo)"


class MainScreen(Screen[None]):
    """The pull list over the app's store, redrawn when the app says the store changed.

    The scope, filter and sort are this screen's own state, ``pull_query``: keys and commands
    only set it, and its watcher decides what to redraw."""

    BINDINGS: ClassVar[list[BindingType]] = keys.bound_by("main")
    pull_query: var[Query] = var(Query(), always_update=True, init=False)
    """Set even to the same query (``:all`` with nothing scoped), it redraws from the top."""

    def __init__(
        self,
        store: ClientStore,
        query: Query,
        *,
        description: str,
        context: str,
        now: Callable[[], datetime],
        color: bool,
        history: Endpoint | None = None,
    ) -> None:
        super().__init__(id="main")
        self.history = history
        self.store = store
        self.description = description
        self.context = context
        self.now = now
        self.color = color
        self.set_reactive(MainScreen.pull_query, query)
        self.flash_message = ""
        self._title = Text()
        self._subtitle = ""
        self._status_text = Text()

    def compose(self) -> ComposeResult:
        yield PullHeader(self.description, self.context, self.color)
        yield Prompt(self._names)
        yield PullTable(self.store, self.now, color=self.color, id="pulls")
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

    @on(StoreChanged)
    def store_changed(self) -> None:
        """The table is the one reader of the store's changed ids, so it drains them here:
        two batches behind a slow frame are then one redraw that loses neither."""
        self.update(*self.store.drain())

    @on(HistoryChanged)
    def history_changed(self, event: HistoryChanged) -> None:
        self.table.set_facts(event.facts)

    @on(LinkChanged)
    def link_changed(self, event: LinkChanged) -> None:
        self.header.show_link(event.state, event.detail)

    def redraw(self) -> None:
        """Everything from scratch: on start, layout change and a new filter or scope."""
        self.table.ensure_layout(self.size.width)
        self.table.rebuild(self.pull_query)
        self.table.set_sort_marker(self.pull_query)
        self._decorate()

    def update(self, dirty: set[str], structural: bool) -> None:
        """One batch from the store: only changed rows are touched."""
        self.table.sync(self.pull_query, dirty, structural)
        self._decorate()

    def _decorate(self) -> None:
        store, query, table = self.store, self.pull_query, self.table
        self.header.show_totals(store)
        title = Text.assemble(
            (" pulls", "bold #5fd7ff"),
            (f"({render.printable(query.scope_label())})", "bold #ff87d7"),
            (f"[{table.row_count}] ", "bold #ffffff"),
        )
        if title != self._title:
            table.border_title = self._title = title
        parts = []
        if query.text:
            parts.append(f"</{query.text}>")
        if query.sort is not None:
            parts.append(f"sort:{query.sort}{query.sort_arrow()}")
        subtitle = render.printable(" ".join(parts))
        if subtitle != self._subtitle:
            self._subtitle = subtitle
            table.border_subtitle = Text(subtitle) if subtitle else None  # text, not markup
        self._status()

    def _status(self) -> None:
        """The crumb, then a message: a command's outcome, or why the highlighted pull failed."""
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append(" <pulls> ", style="bold #000000 on #ffaf00")
        message, style = self.flash_message, "#ffd75f"
        pull_id = self.table.highlighted_pull()
        view = self.store.get(pull_id) if pull_id else None
        if not message and view is not None and view.pull.error:
            error = render.message_text(view.pull.error)
            message, style = f"✗ {error}", render.palette(self.color).bad
        if message:
            text.append(f" {message}", style=style)
        if text != self._status_text:
            self._status_text = text
            self.query_one("#status", Static).update(text, layout=False)

    def flash(self, message: str) -> None:
        self.flash_message = message
        self._status()

    def _names(self, verb: str) -> Iterable[str]:
        """Completions for ``:node`` and ``:ns``; a name that would not print as itself is
        left out rather than typed into the prompt."""
        pulls = self.store.pulls()
        if verb == "node":
            names = {p.node_name for p in pulls}
        elif verb == "ns":
            names = {pod.namespace for p in pulls for pod in p.pods}
        else:
            return ()
        return {name for name in names if render.printable(name) == name}

    # --- keys -------------------------------------------------------------------------------

    def action_filter(self) -> None:
        self.prompt.open("/", self.pull_query.text)

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
        if self.pull_query.text:
            self.pull_query = replace(self.pull_query, text="")
        self.flash("")

    def action_sort(self, key: SortKey) -> None:
        query = self.pull_query
        reverse = not query.reverse if query.sort == key else False
        self.pull_query = replace(query, sort=key, reverse=reverse)

    @on(PullTable.Selected, "#pulls")
    def open_detail(self, event: PullTable.Selected) -> None:
        facts = None
        if self.history is not None:  # fetched or not yet, the detail screen shows the line
            facts = self.table.facts or HistoryFacts()
        self.app.push_screen(
            DetailScreen(self.store, event.pull_id, now=self.now, color=self.color, facts=facts)
        )

    @on(PullTable.Highlighted, "#pulls")
    def highlighted(self) -> None:
        self._status()

    @on(Input.Changed, "#prompt-input")
    def typing(self, event: Input.Changed) -> None:
        """The filter applies as you type, as in k9s; commands wait for Enter."""
        if self.prompt.mode == "/":
            self.pull_query = replace(self.pull_query, text=event.value.strip())

    @on(Input.Submitted, "#prompt-input")
    async def submitted(self, event: Input.Submitted) -> None:
        mode = self.prompt.mode
        self._close_prompt()
        if mode == ":":
            await self.run_command(event.value)

    def _close_prompt(self) -> None:
        self.prompt.close()
        self.table.focus()

    async def run_command(self, line: str) -> None:
        verb, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        verb = verb.lower()
        query = self.pull_query
        if verb in ("q", "q!", "quit"):
            self.app.exit()
        elif verb in ("node", "no") and arg:
            self.pull_query = replace(query, node=arg)
        elif verb in ("ns", "namespace") and arg:
            self.pull_query = replace(query, namespace=arg)
        elif verb == "all":
            self.pull_query = replace(query, node="", namespace="", phases=frozenset(), text="")
        elif verb == "failed":
            self.pull_query = replace(query, phases=frozenset({"failed"}))
        elif verb == "active":
            self.pull_query = replace(query, phases=ACTIVE_PHASES)
        elif verb in ("history", "hist", "updates", "up"):
            self.open_history_view(verb.startswith("h"))
            return
        elif verb in ("help", "?"):
            await self.run_action("app.help")
        else:
            self.flash(
                f"unknown command :{line.strip()} (try :node, :ns, :all, :failed, :history, :q)"
            )
            return
        self.flash("")

    def open_history_view(self, history: bool) -> None:
        """``:history`` (the finished pulls the scope and filter allow) or ``:updates``; without a
        collector, one line says why, and nothing else changes."""
        if self.history is None:
            self.flash(f":{'history' if history else 'updates'} {NEEDS_COLLECTOR}")
            return
        self.flash("")
        from pulltrace.tui.screens.history import HistoryScreen
        from pulltrace.tui.screens.updates import UpdatesScreen

        if history:
            query = self.pull_query
            self.app.push_screen(
                HistoryScreen(
                    self.history, node=query.node, image=query.text, now=self.now, color=self.color
                )
            )
        else:
            self.app.push_screen(UpdatesScreen(self.history, color=self.color))

    def watch_pull_query(self, old: Query, new: Query) -> None:
        """A new scope or filter swaps most rows, which one rebuild does faster than many
        removals; a new sort keeps the rows and only reorders them."""
        if old != new and replace(old, sort=new.sort, reverse=new.reverse) == new:
            self.table.set_sort_marker(new)
            self.update(set(), structural=True)
        else:
            self.redraw()
