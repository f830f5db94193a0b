"""The one interface between where pull data comes from and the views that show it.

A collector's SSE stream, the Kubernetes API proxy, a local containerd socket and the demo all
yield the same messages, so the TUI never knows which one it is talking to. A source starts
with a ``Snapshot`` (after every reconnect too, since events may have been missed) and then
streams ``Event``s, and ``NodeUpdate``s when it has agents to speak of; ``ConnectionState``
tells the header what the user can trust.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal, Protocol

import msgspec

from pulltrace.model import NodeStatus, PullEvent, PullStatus

LinkState = Literal["live", "reconnecting", "offline"]


class Snapshot(msgspec.Struct, frozen=True):
    """Every pull the source knows now; pulls missing from it are gone. ``nodes`` likewise for
    the nodes' agents, or None from a source that has none (the Kubernetes API alone, one
    containerd, a collector older than node health)."""

    pulls: list[PullStatus]
    nodes: list[NodeStatus] | None = None


class Event(msgspec.Struct, frozen=True):
    event: PullEvent


class NodeUpdate(msgspec.Struct, frozen=True):
    """One node's status changed, or (``removed``) the collector forgot the node."""

    node: NodeStatus
    removed: bool = False


class ConnectionState(msgspec.Struct, frozen=True):
    state: LinkState
    detail: str = ""


Message = Snapshot | Event | NodeUpdate | ConnectionState


class Source(Protocol):
    """An async iterable of messages with two labels for the header."""

    @property
    def description(self) -> str:
        """Where data comes from, e.g. ``collector http://…``, ``API only``, ``demo``."""
        ...

    @property
    def context(self) -> str:
        """The kube context name, or ``""`` when there is none."""
        ...

    def __aiter__(self) -> AsyncIterator[Message]: ...
