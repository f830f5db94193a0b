"""What the app tells its screens. The app owns the source and the store; a screen owns what it
shows and redraws when told, so neither reaches into the other."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from pulltrace.client.source import LinkState
from pulltrace.tui.history import HistoryFacts


class StoreChanged(Message, bubble=False):
    """A batch was applied to the store (and a throughput point may have been taken).

    It carries nothing: the main screen drains the store's changed ids itself, so two batches
    queued behind a slow frame are one redraw, and no change is lost by merging them."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StoreChanged)


@dataclass
class LinkChanged(Message, bubble=False):
    """The source's connection changed: only the newest state is worth drawing."""

    state: LinkState
    detail: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LinkChanged)


@dataclass
class HistoryChanged(Message, bubble=False):
    """The app fetched the collector's updates and repository statistics again (or failed to):
    rows re-mark their update badges and history ETAs. Only the newest facts are worth drawing."""

    facts: HistoryFacts

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, HistoryChanged)


class UpdatesEdited(Message):
    """A view dismissed or tagged an update: it bubbles to the app, which fetches the facts
    again so that the badges follow at once rather than at the next period."""
