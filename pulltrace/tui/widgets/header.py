"""The k9s-style header: where the data comes from, whether it is live, and the cluster-wide
numbers that answer "is anything pulling right now, and how fast?" before reading a row, and
"can every node's agent see its containerd?" when the source has agents."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Sparkline, Static

from pulltrace import render
from pulltrace.client.source import LinkState
from pulltrace.client.store import ClientStore
from pulltrace.tui import keys

LINK_LABELS: dict[LinkState, tuple[str, str]] = {
    "live": ("● LIVE", "bold #5fd787"),
    "reconnecting": ("◐ RECONNECTING", "bold #ffd75f"),
    "offline": ("○ OFFLINE", "bold #ff5f5f"),
}
HINTS_MIN_WIDTH = 110


def hints_text() -> Text:
    """Two columns of the key table's shown keys, as k9s shows them beside its logo."""
    hints = keys.hints()
    text = Text(no_wrap=True, end="")
    rows = [hints[i : i + 2] for i in range(0, len(hints), 2)]
    for n, row in enumerate(rows):
        for key, label in row:
            text.append(f"{'<' + key + '>':>8} ", style="bold #ff87d7")
            text.append(f"{label:<8}", style="#8a8f98")
        if n < len(rows) - 1:
            text.append("\n")
    return text


def nodes_text(counts: dict[str, int] | None, p: render.Palette) -> Text:
    """``nodes 20 · 1 degraded · 1 unauthorized · 2 stale``, the first two in the warning
    colour; nothing when the source has no agents to speak of."""
    text = Text(no_wrap=True, end="")
    if not counts or not sum(counts.values()):
        return text
    text.append("nodes ", style=p.muted)
    text.append(str(sum(counts.values())), style="bold")
    for state in ("degraded", "unauthorized"):
        if counts.get(state):
            text.append(" · ", style=p.muted)
            text.append(f"{counts[state]} {state}", style=f"bold {p.warn}")
    if counts.get("stale"):
        text.append(f" · {counts['stale']} stale", style=p.muted)
    text.append("  ")
    return text


class PullHeader(Widget):
    def __init__(self, description: str, context: str, color: bool) -> None:
        super().__init__(id="header")
        self.description = description
        self.context = context
        self.color = color
        self._shown: dict[str, Text] = {}
        self._samples = -1

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Static(id="info")
            with Vertical(id="stats"):
                yield Static(id="counts")
                with Horizontal(id="rate-row"):
                    yield Static(id="rate")
                    yield Sparkline([], id="throughput")
                yield Static(id="window")
            yield Static(hints_text(), id="hints")

    def on_mount(self) -> None:
        self.show_link("offline", "connecting…")

    def on_resize(self) -> None:
        """Key hints only where they leave the numbers enough room; ``?`` lists them all."""
        self.query_one("#hints").display = self.size.width >= HINTS_MIN_WIDTH

    def show_link(self, state: LinkState, detail: str) -> None:
        label, style = LINK_LABELS[state]
        text = Text(no_wrap=True, end="", overflow="ellipsis")
        for name, value in (("Context", self.context or "-"), ("Source", self.description)):
            text.append(f"{name}: ", style="bold #ffaf00")
            text.append(f"{render.printable(value)}\n")
        text.append("Link:    ", style="bold #ffaf00")
        text.append(label, style=style if self.color else "bold")
        if detail:
            text.append(f" {render.message_text(detail)}", style="#8a8f98")
        self._show("#info", text)

    def show_totals(self, store: ClientStore) -> None:
        counts = store.counts()
        p = render.palette(self.color)
        line = Text(no_wrap=True, end="")
        for label, n, style in (
            ("active", counts["active"], p.active),
            ("done", counts["completed"], p.ok),
            ("failed", counts["failed"], p.bad if counts["failed"] else p.muted),
        ):
            line.append(f"{n}", style=f"bold {style}")
            line.append(f" {label}  ", style=p.muted)
        self._show("#counts", line)
        speed = render.speed_text(store.total_speed())
        self._show("#rate", Text(f"↓ {speed}", style="bold", end=""))
        if store.samples != self._samples:
            self._samples = store.samples
            self.query_one("#throughput", Sparkline).data = list(store.throughput)
        minutes = max(1, len(store.throughput) // 60)
        window = nodes_text(store.node_counts(), p)
        window.append(f"throughput, last {minutes}m", style=p.muted)
        self._show("#window", window)

    def _show(self, selector: str, text: Text) -> None:
        """Repaints a line only when it changed: the header is redrawn on every batch."""
        if self._shown.get(selector) != text:
            self._shown[selector] = text
            self.query_one(selector, Static).update(text, layout=False)
