"""What the app tells its screens. The app owns the source and the store; a screen owns what it
shows and redraws when told, so neither reaches into the other."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from pulltrace.client.source import LinkState


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
