"""The ``watch`` application: consumes a Source in the background and redraws on a timer.

Messages from the source are queued as they arrive and applied in one batch per tick, so a
burst of a thousand events costs one table sync, not a thousand; the screens then touch only
the rows the store marked dirty.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen

from pulltrace.client.source import ConnectionState, LinkState, Message, Snapshot, Source
from pulltrace.client.store import ClientStore, Query
from pulltrace.tui.screens.detail import DetailScreen
from pulltrace.tui.screens.help import HelpScreen
from pulltrace.tui.screens.main import MainScreen

FLUSH_INTERVAL = 0.5


class PulltraceApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "pulltrace"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+c", "quit", "quit", priority=True, show=False),
    ]

    def __init__(
        self,
        source: Source,
        namespace: str | None = None,
        node: str | None = None,
        all_namespaces: bool = False,
        *,
        clock: Callable[[], float] = time.time,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        super().__init__()
        self.source = source
        self.store = ClientStore()
        self.pull_query = Query(
            namespace="" if all_namespaces else (namespace or ""),
            node=node or "",
        )
        self.color = not self.no_color
        self.clock = clock
        self.flush_interval = flush_interval
        self.inbox: deque[Message] = deque()
        self.link: LinkState = "offline"
        self.link_detail = "connecting…"
        self.main_screen = MainScreen(self)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def get_default_screen(self) -> Screen[None]:
        return self.main_screen

    def on_mount(self) -> None:
        self.consume()
        self.set_interval(self.flush_interval, self.flush)

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
        """Applies queued messages as one batch and redraws what changed."""
        link_changed = snapshot = False
        while self.inbox:
            message = self.inbox.popleft()
            if not isinstance(message, ConnectionState):
                self.store.apply(message)
                snapshot = snapshot or isinstance(message, Snapshot)
            else:
                self.link, self.link_detail = message.state, message.detail
                link_changed = True
        self.store.sample(self.clock())
        dirty, structural = self.store.drain()
        if link_changed:
            self.main_screen.header.show_link(self.link, self.link_detail)
        self.main_screen.update(dirty, structural)
        if snapshot:
            # A snapshot of a big cluster leaves tens of thousands of long-lived objects (pulls,
            # rows, cells); a full collection scanning them all stalls a frame by ~70 ms. Frozen,
            # they are skipped; anything that dies later is still freed by reference counting.
            gc.freeze()
        if isinstance(self.screen, DetailScreen):
            self.screen.update()

    def open_detail(self, pull_id: str) -> None:
        self.push_screen(DetailScreen(self, pull_id))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())
