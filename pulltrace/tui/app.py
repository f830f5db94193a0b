"""The ``watch`` application: consumes a Source in the background and applies it on a timer.

Messages from the source are queued as they arrive and applied in one batch per tick, so a
burst of a thousand events costs one table sync, not a thousand. The app owns the source and
the store; it tells its screens what changed with messages (``StoreChanged``, ``LinkChanged``)
and each screen redraws what it shows, touching only the rows the store marked dirty.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import App
from textual.binding import BindingType
from textual.screen import Screen
from textual.worker import get_current_worker

from pulltrace.client.source import ConnectionState, Message, Snapshot, Source
from pulltrace.client.store import ClientStore, Query
from pulltrace.tui import keys
from pulltrace.tui.history import HistoryFacts
from pulltrace.tui.messages import HistoryChanged, LinkChanged, StoreChanged, UpdatesEdited
from pulltrace.tui.screens.help import HelpScreen
from pulltrace.tui.screens.main import MainScreen

if TYPE_CHECKING:
    from pulltrace.client.endpoint import Endpoint

FLUSH_INTERVAL = 0.5
HISTORY_INTERVAL = 30.0
"""Seconds between fetches of the collector's updates and repository statistics: updates come
from DIUN a few times a day, and a repository's median moves slowly."""


class PulltraceApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "pulltrace"
    BINDINGS: ClassVar[list[BindingType]] = keys.bound_by("app")

    def __init__(
        self,
        source: Source,
        namespace: str | None = None,
        node: str | None = None,
        all_namespaces: bool = False,
        *,
        clock: Callable[[], float] = time.time,
        flush_interval: float = FLUSH_INTERVAL,
        history: Endpoint | None = None,
        history_interval: float = HISTORY_INTERVAL,
    ) -> None:
        """``history`` is the collector whose history, updates and tags the views read; ``None``
        when the source has no collector, and then only ``:history`` and ``:updates`` say so."""
        super().__init__()
        self.source = source
        self.store = ClientStore()
        self.start_query = Query(
            namespace="" if all_namespaces else (namespace or ""),
            node=node or "",
        )
        """The scope from the command line; the main screen's ``pull_query`` moves on from it."""
        self.color = not self.no_color
        self.clock = clock
        self.flush_interval = flush_interval
        self.inbox: deque[Message] = deque()
        self._freeze = False
        self.history = history
        self.history_interval = history_interval
        self.facts = HistoryFacts()
        """The last fetched updates and repository statistics."""

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def get_default_screen(self) -> Screen[None]:
        return MainScreen(
            self.store,
            self.start_query,
            description=self.source.description,
            context=self.source.context,
            now=self.now,
            color=self.color,
            history=self.history,
        )

    def on_mount(self) -> None:
        self.consume()
        self.set_interval(self.flush_interval, self.flush)
        if self.history is not None:
            self.fetch_facts()
            self.set_interval(self.history_interval, self.fetch_facts)

    @work(thread=True, exclusive=True, group="history", exit_on_error=False)
    def fetch_facts(self) -> None:
        """Updates and repository statistics, in a thread (the client blocks); a failure keeps
        the last facts and says why where they are shown."""
        from pulltrace.client.history import HistoryClient
        from pulltrace.errors import PulltraceError

        assert self.history is not None
        client = HistoryClient(self.history)
        try:
            facts = HistoryFacts.of(client.updates().updates, client.stats(by="repository").groups)
        except PulltraceError as err:
            facts = dataclasses.replace(self.facts, error=str(err))
        if not get_current_worker().is_cancelled:
            self.call_from_thread(self.show_facts, facts)

    def show_facts(self, facts: HistoryFacts) -> None:
        self.facts = facts
        for screen in self.screen_stack:
            screen.post_message(HistoryChanged(facts))

    @on(UpdatesEdited)
    def updates_edited(self) -> None:
        if self.history is not None:
            self.fetch_facts()

    @work(exclusive=True, group="source", exit_on_error=False)
    async def consume(self) -> None:
        """Queues everything; ``flush`` applies it. An ended or broken source leaves the last
        picture on screen, marked offline, rather than closing the app under the user."""
        try:
            async for message in self.source:
                self.inbox.append(message)
        except Exception as err:
            self.inbox.append(ConnectionState("offline", f"{type(err).__name__}: {err}"))
        else:
            self.inbox.append(ConnectionState("offline", "source ended"))

    def flush(self) -> None:
        """Applies queued messages as one batch and tells every open screen."""
        if self._freeze:
            # A snapshot of a big cluster leaves tens of thousands of long-lived objects (pulls,
            # rows, cells); a full collection scanning them all stalls a frame by ~70 ms. Frozen,
            # they are skipped; anything that dies later is still freed by reference counting.
            # This runs a tick after the snapshot, once the screens have built their rows.
            gc.freeze()
            self._freeze = False
        link: ConnectionState | None = None
        while self.inbox:
            message = self.inbox.popleft()
            if isinstance(message, ConnectionState):
                link = message
            else:
                self.store.apply(message)
                self._freeze |= isinstance(message, Snapshot)
        self.store.sample(self.clock())
        for screen in self.screen_stack:
            if link is not None:
                screen.post_message(LinkChanged(link.state, link.detail))
            screen.post_message(StoreChanged())

    def action_help(self) -> None:
        self.push_screen(HelpScreen())
