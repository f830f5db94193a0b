"""The one interface between where pull data comes from and the commands and views that show it.

Each back end is one module with one class: a collector, directly or through the Kubernetes
API server's proxy (``collector.py``), the Kubernetes API alone (``kubeapi.py``), one node's
containerd (``containerd.py``) and the demo (``demo.py``); ``connect.py`` picks one. Each does
two things, so that ``ls``, ``wait`` and ``watch`` never know which one they talk to:

- ``list_once()``: what the source knows now, read once and synchronously (``ls`` starts no
  event loop for it); a ``SourceError`` with one line when it cannot.
- iterating it: the live stream. It starts with a ``Snapshot`` (after every reconnect too,
  since events may have been missed), then ``Event``s, and ``NodeUpdate``s when the source has
  agents to speak of; ``ConnectionState`` tells the header what the user can trust. The stream
  reports trouble as states and reconnects; it does not raise.
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
    nodes_error: str = ""
    """From ``list_once``: why ``nodes`` is None although the source has agents (one line)."""


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
    """A one-shot listing and an async iterable of messages, with two labels for the header."""

    @property
    def description(self) -> str:
        """Where data comes from, e.g. ``collector http://…``, ``API only``, ``demo``."""
        ...

    @property
    def context(self) -> str:
        """The kube context name, or ``""`` when there is none."""
        ...

    def list_once(self) -> Snapshot:
        """Everything the source knows now; blocks, within the source's own deadline, and
        raises a ``pulltrace.errors.SourceError`` with one line when it cannot answer."""
        ...

    def __aiter__(self) -> AsyncIterator[Message]: ...
