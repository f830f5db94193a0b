"""One pull up close: its layers, its speed over time, who waits for it, and what happened."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Sparkline, Static

from pulltrace import render
from pulltrace.client.store import ClientStore, PullView
from pulltrace.model import ACTIVE_PHASES, PullStatus
from pulltrace.rollup import history_eta
from pulltrace.tui import keys
from pulltrace.tui.history import HistoryFacts
from pulltrace.tui.messages import HistoryChanged, StoreChanged

LAYER_COLUMNS = (
    ("digest", "DIGEST", 12),
    ("type", "TYPE", 9),
    ("progress", "PROGRESS", 15),
    ("bytes", "BYTES", 11),
    ("speed", "SPEED", 7),
    ("state", "STATE", 7),
)
BAR = 10
UNSENT = "layers: not sent for a pull that had finished before this view connected"


def local_time(t: datetime) -> str:
    return t.astimezone().strftime("%H:%M:%S")


def head_text(
    pull: PullStatus, now: datetime, color: bool, facts: HistoryFacts | None = None
) -> Text:
    """Three lines: what and where; how far, how big and how fast; layers and since when, or
    why it failed. With the collector's history, an ETA from earlier pulls of the repository
    while the pull's own is unknown."""
    p = render.palette(color)
    glyph = render.glyph_cell(pull.phase, color)
    registry, repo, tag = render.image_label(pull)
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    text.append_text(Text.assemble(*glyph))
    text.append(" ")
    if registry:
        text.append(registry + "/", style=p.muted)
    text.append(repo, style="bold")
    text.append(tag, style=p.accent)
    text.append(f"  on {render.node_text(pull.node_name)}  ", style=p.muted)
    text.append(f"{pull.phase}\n", style=glyph[0][1])
    text.append_text(Text.assemble(*render.pull_progress_cell(pull, 16, color)))
    text.append(f"  {render.size_text(pull, with_cached=True)}")
    text.append(f"  {render.speed_text(pull.bytes_per_sec)}", style=p.active)
    if pull.phase != "failed":
        label = "ETA" if pull.phase in ACTIVE_PHASES else "took"
        text.append(f"  {label} ")
        group = facts.group(pull) if facts is not None else None
        left = history_eta(pull, group, now)
        if left is None or group is None:
            text.append(render.timing_text(pull, now))
        else:
            text.append_text(
                Text.assemble(*render.history_eta_cell(left, group.count, True, color))
            )
    text.append("\n")
    text.append(f"layers {render.layers_text(pull)}", style=p.muted)
    if pull.error:
        text.append(f"  ✗ {render.message_text(pull.error)}", style=p.bad)
    elif pull.started_at:
        ago = render.duration_text(render.elapsed(pull.started_at, now))
        text.append(f"  started {local_time(pull.started_at)} ({ago} ago)", style=p.muted)
    return text


def history_line(pull: PullStatus, facts: HistoryFacts, color: bool) -> Text:
    """What earlier pulls of the same repository took, from the collector's statistics."""
    p = render.palette(color)
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    text.append("history ", style="bold #ffaf00")
    group = facts.group(pull)
    if group is None:
        text.append("no earlier pulls of this repository", style=p.muted)
    else:
        q = group.duration_seconds
        stats = render.history_stats_text(group.count, group.failures, q.p50, q.p95)
        text.append(stats)
        text.append(f"  of {render.printable(group.key)}", style=p.muted)
    if facts.error:
        text.append(f"  ({render.message_text(facts.error)})", style=p.warn)
    return text


def pods_text(pull: PullStatus, color: bool) -> Text:
    p = render.palette(color)
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    text.append(f"WAITING PODS ({len(pull.pods)})\n", style="bold #ffaf00")
    if not pull.pods:
        text.append("none known", style=p.muted)
    for pod in pull.pods:
        text.append(f"{render.printable(pod.namespace)}/", style=p.muted)
        text.append(render.printable(pod.pod_name))
        if pod.container:
            text.append(f" ({render.printable(pod.container)})", style=p.muted)
        text.append("\n")
    return text


def events_text(view: PullView, rows: int, color: bool) -> Text:
    """The newest entries that fit: the end of a pull's story is what matters while watching."""
    p = render.palette(color)
    styles = {"pull.failed": p.bad, "pull.completed": p.ok, "layer.completed": ""}
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    text.append(f"EVENTS ({len(view.log)})", style="bold #ffaf00")
    for entry in list(view.log)[-max(1, rows - 1) :]:
        text.append(f"\n{local_time(entry.timestamp)} ", style=p.muted)
        text.append(entry.type, style=styles.get(entry.type, p.active))
        if entry.detail:
            detail = entry.detail
            if detail.startswith("sha256:"):
                detail = render.short_digest(detail)
            text.append(f" {render.message_text(detail)}", style=p.muted)
    return text


class DetailScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = keys.bound_by("detail")

    def __init__(
        self,
        store: ClientStore,
        pull_id: str,
        *,
        now: Callable[[], datetime],
        color: bool,
        facts: HistoryFacts | None = None,
    ) -> None:
        """``facts`` is ``None`` without a collector: the history line is then left out."""
        super().__init__(id="detail")
        self.facts = facts
        self.store = store
        self.pull_id = pull_id
        self.now = now
        self.color = color
        self._shown: dict[str, tuple[render.Cell, ...]] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-box") as box:
            box.border_title = " pull "
            yield Static(id="detail-head")
            yield Static(id="detail-history")
            with Horizontal(id="speed-row"):
                yield Static(id="speed-label")
                yield Sparkline([], id="pull-speed")
            yield DataTable[Text](id="layers", cursor_type="none", cell_padding=1)
            yield Static(id="layers-note")
            with Horizontal(id="detail-bottom"):
                yield Static(id="pods")
                yield Static(id="events")
        yield Static(id="detail-status")

    def on_mount(self) -> None:
        self.query_one("#layers-note", Static).display = False
        self.query_one("#detail-history", Static).display = self.facts is not None
        table = self.query_one("#layers", DataTable)
        for key, label, width in LAYER_COLUMNS:
            table.add_column(label, width=width, key=key)
        table.focus()
        self.update()

    def on_resize(self) -> None:
        self.update()

    @on(StoreChanged)
    def store_changed(self) -> None:
        self.update()

    @on(HistoryChanged)
    def history_changed(self, event: HistoryChanged) -> None:
        if self.facts is not None:
            self.facts = event.facts
            self.update()

    def update(self) -> None:
        """Redraws from the store; a removed pull keeps its last picture, marked as gone."""
        view = self.store.get(self.pull_id)
        status = Text(no_wrap=True, end="")
        status.append(" <pulls> ", style="bold #000000 on #5fd7ff")
        status.append(" <detail> ", style="bold #000000 on #ffaf00")
        if view is None:
            status.append("  this pull is gone (removed from the collector's history)")
            self.query_one("#detail-status", Static).update(status, layout=False)
            return
        self.query_one("#detail-status", Static).update(status, layout=False)
        pull, now, color = view.pull, self.now(), self.color
        box = self.query_one("#detail-box")
        box.border_title = Text(f" pull {render.printable(pull.id)} ")  # text, not markup
        head = head_text(pull, now, color, self.facts)
        self.query_one("#detail-head", Static).update(head, layout=False)
        if self.facts is not None:
            line = history_line(pull, self.facts, color)
            self.query_one("#detail-history", Static).update(line, layout=False)
        speeds = list(view.speeds)
        peak = max(speeds, default=0.0)
        label = Text.assemble(
            ("speed ", "bold #ffaf00"),
            (f"{render.speed_text(pull.bytes_per_sec):>8}", "bold"),
            (f"  peak {render.speed_text(peak)} ", render.palette(color).muted),
            end="",
        )
        self.query_one("#speed-label", Static).update(label, layout=False)
        self.query_one("#pull-speed", Sparkline).data = speeds
        self._sync_layers(pull)
        self.query_one("#pods", Static).update(pods_text(pull, color), layout=False)
        events = self.query_one("#events", Static)
        events.update(events_text(view, events.size.height or 8, color), layout=False)

    def _sync_layers(self, pull: PullStatus) -> None:
        """A collector's snapshot leaves out the layers of finished pulls: a line saying so
        stands in for an empty table."""
        table: DataTable[Text] = self.query_one("#layers", DataTable)
        unsent = pull.layer_count > 0 and not pull.layers
        if table.display == unsent:
            table.display = not unsent
            note = self.query_one("#layers-note", Static)
            note.display = unsent
            note.update(Text(UNSENT, style=render.palette(self.color).muted))
        for layer in pull.layers:
            cells = render.layer_cells(layer, BAR, self.color)
            before = self._shown.get(layer.digest)
            if before is None:
                table.add_row(*(Text.assemble(*c, end="") for c in cells), key=layer.digest)
            else:
                for (key, _, _), old, new in zip(LAYER_COLUMNS, before, cells, strict=True):
                    if old != new:
                        table.update_cell(layer.digest, key, Text.assemble(*new, end=""))
            self._shown[layer.digest] = cells
