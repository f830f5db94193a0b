"""One finished pull from ``:history``, up close: what the history keeps of it (its layers are
summarised, not listed)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from pulltrace import render
from pulltrace.model import FinishedPull
from pulltrace.tui import keys
from pulltrace.tui.screens.detail import head_text, local_time, pods_text


def figures_text(pull: FinishedPull, color: bool) -> Text:
    """When, how long, how fast on average and at the peak, and the manifest it resolved to."""
    p = render.palette(color)
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    rows = [
        ("started", local_time(pull.started_at) if pull.started_at else "-"),
        ("finished", local_time(pull.completed_at) if pull.completed_at else "-"),
        ("took", render.duration_text(pull.duration_seconds)),
        ("average", render.speed_text(pull.average_bytes_per_sec)),
        ("peak", render.speed_text(pull.peak_bytes_per_sec)),
        ("manifest", render.short_digest(pull.manifest_digest) if pull.manifest_digest else "-"),
    ]
    for n, (label, value) in enumerate(rows):
        text.append(f"{label:<9}", style="bold #ffaf00")
        text.append(value, style=p.active if label in ("average", "peak") else "")
        if n < len(rows) - 1:
            text.append("\n")
    return text


class SummaryScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = keys.bound_by("summary")

    def __init__(self, pull: FinishedPull, *, now: Callable[[], datetime], color: bool) -> None:
        super().__init__()
        self.pull = pull
        self.now = now
        self.color = color

    def compose(self) -> ComposeResult:
        pull, color = self.pull, self.color
        with Vertical(id="summary-box") as box:
            box.border_title = Text(f" pull {render.printable(pull.id)} ")  # text, not markup
            box.border_subtitle = " esc to close "
            yield Static(head_text(pull, self.now(), color), id="summary-head")
            yield Static(figures_text(pull, color), id="summary-figures")
            yield Static(pods_text(pull, color), id="summary-pods")
