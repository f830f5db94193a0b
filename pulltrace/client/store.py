"""The client-side copy of the collector's pulls, and pure helpers to filter and order them.

The view redraws only what changed: every mutation records the pull id in ``dirty`` and the
view drains that set on its own timer. Histories are sampled by event time, not by wall time,
so a replayed stream (a reconnect, the demo's warm-up, a test) draws the same sparklines.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from typing import Literal, get_args

import msgspec

from pulltrace.client.source import Event, NodeUpdate, Snapshot
from pulltrace.model import (
    ACTIVE_PHASES,
    NodeState,
    NodeStatus,
    PullEvent,
    PullStatus,
    merge_layers,
)

SortKey = Literal["node", "image", "speed", "progress", "eta", "age"]
DESCENDING_SORTS: frozenset[str] = frozenset({"speed", "progress"})
"""Keys whose natural order puts the largest first."""

LIFECYCLE_TYPES = frozenset(
    {"pull.started", "pull.completed", "pull.failed", "layer.started", "layer.completed"}
)
SPEED_POINTS = 120
THROUGHPUT_POINTS = 300
EVENT_LOG = 200


class LogEntry(msgspec.Struct, frozen=True):
    timestamp: datetime
    type: str
    detail: str = ""


class PullView(msgspec.Struct):
    """One pull plus what only a watcher accumulates: its speed over time and its lifecycle."""

    pull: PullStatus
    speeds: deque[float] = msgspec.field(default_factory=lambda: deque(maxlen=SPEED_POINTS))
    log: deque[LogEntry] = msgspec.field(default_factory=lambda: deque(maxlen=EVENT_LOG))
    last_speed_second: int = -1

    def record_speed(self, t: float, bytes_per_sec: float) -> None:
        second = math.floor(t)
        if second == self.last_speed_second and self.speeds:
            self.speeds[-1] = bytes_per_sec
            return
        self.speeds.append(bytes_per_sec)
        self.last_speed_second = second


class ClientStore:
    def __init__(self) -> None:
        self.views: dict[str, PullView] = {}
        self.dirty: set[str] = set()
        self.throughput: deque[float] = deque(maxlen=THROUGHPUT_POINTS)
        self._last_sample = -1
        self.samples = 0
        """Throughput points taken so far, so a view redraws the sparkline only when it moved."""
        self.structure_changed = False
        """Pulls were added or removed since the last drain: row order may need recomputing."""
        self.nodes: dict[str, NodeStatus] | None = None
        """The nodes' agents by name; None while the source has said nothing of nodes."""

    def __len__(self) -> int:
        return len(self.views)

    def get(self, pull_id: str) -> PullView | None:
        return self.views.get(pull_id)

    def pulls(self) -> list[PullStatus]:
        return [v.pull for v in self.views.values()]

    def apply(self, message: Snapshot | Event | NodeUpdate) -> None:
        """What every consumer of a ``Source`` does with its data messages."""
        if isinstance(message, Snapshot):
            self.apply_snapshot(message.pulls)
            if message.nodes is not None:
                self.nodes = {n.node_name: n for n in message.nodes}
        elif isinstance(message, NodeUpdate):
            self.apply_node(message)
        else:
            self.apply_event(message.event)

    def apply_node(self, update: NodeUpdate) -> None:
        if self.nodes is None:
            self.nodes = {}
        if update.removed:
            self.nodes.pop(update.node.node_name, None)
        else:
            self.nodes[update.node.node_name] = update.node

    def node_counts(self) -> dict[str, int] | None:
        """Nodes by state, or None when the source does not track nodes."""
        if self.nodes is None:
            return None
        counts = dict.fromkeys(get_args(NodeState), 0)
        for node in self.nodes.values():
            counts[node.state] += 1
        return counts

    def apply_snapshot(self, pulls: Iterable[PullStatus]) -> None:
        """Replaces everything but keeps the histories of pulls that survive, so a reconnect
        does not blank the detail sparkline. A snapshot carries no time of its own, so it adds
        no history points: the events after it do."""
        fresh = {p.id: p for p in pulls}
        for pull_id in list(self.views):
            if pull_id not in fresh:
                del self.views[pull_id]
                self._touch(pull_id, structural=True)
        for pull_id, pull in fresh.items():
            view = self.views.get(pull_id)
            if view is None:
                self.views[pull_id] = view = PullView(pull)
                self._touch(pull_id, structural=True)
                if pull.started_at is not None:
                    view.log.append(LogEntry(pull.started_at, "pull.started"))
                continue
            pull = _keep_layers(view.pull, pull)
            if view.pull != pull:
                view.pull = pull
                self._touch(pull_id)

    def apply_event(self, event: PullEvent) -> None:
        t = event.timestamp.timestamp()
        self.sample(t)
        pull = event.pull
        if event.type == "pull.removed":
            if self.views.pop(pull.id, None) is not None:
                self._touch(pull.id, structural=True)
            return
        view = self.views.get(pull.id)
        if view is None:
            self.views[pull.id] = view = PullView(pull)
            self._touch(pull.id, structural=True)
        else:
            if view.pull.phase != pull.phase:
                self.structure_changed = True
            if event.layer is not None and not pull.layers:
                # The pull comes without layers: the one that changed joins those held.
                layers = merge_layers(view.pull.layers, [event.layer])
                pull = msgspec.structs.replace(pull, layers=layers)
            view.pull = pull
            self._touch(pull.id)
        if pull.phase in ACTIVE_PHASES or event.type in ("pull.completed", "pull.failed"):
            view.record_speed(t, pull.bytes_per_sec if pull.phase in ACTIVE_PHASES else 0.0)
        if event.type in LIFECYCLE_TYPES:
            detail = ""
            if event.layer is not None:
                detail = event.layer.digest
            elif event.type == "pull.failed":
                detail = pull.error
            view.log.append(LogEntry(event.timestamp, event.type, detail))

    def sample(self, now: float) -> None:
        """One throughput point per elapsed second (the current total stands for any second
        without events), capped to the history length."""
        second = math.floor(now)
        if self._last_sample < 0:
            self._last_sample = second - 1
        missing = min(second - self._last_sample, THROUGHPUT_POINTS)
        if missing <= 0:
            return
        total = self.total_speed()
        self.throughput.extend([total] * missing)
        self.samples += missing
        self._last_sample = second

    def total_speed(self) -> float:
        return sum(v.pull.bytes_per_sec for v in self.views.values() if _active(v.pull))

    def counts(self) -> dict[str, int]:
        counts = {"active": 0, "completed": 0, "failed": 0}
        for view in self.views.values():
            phase = view.pull.phase
            key = "active" if phase in ACTIVE_PHASES else phase
            if key in counts:
                counts[key] += 1
        return counts

    def drain(self) -> tuple[set[str], bool]:
        """Ids changed since the last call, and whether rows came, went or changed group."""
        dirty, structural = self.dirty, self.structure_changed
        self.dirty, self.structure_changed = set(), False
        return dirty, structural

    def _touch(self, pull_id: str, structural: bool = False) -> None:
        self.dirty.add(pull_id)
        self.structure_changed |= structural


TROUBLED = frozenset({"degraded", "unauthorized"})
"""Node states a user is warned about: the agent cannot read containerd, or the collector
refuses its token. Both mean the node's pulls are not being seen."""


def degraded(nodes: Iterable[NodeStatus], node: str = "") -> list[NodeStatus]:
    """Nodes in a ``TROUBLED`` state, by name (only ``node`` when given)."""
    chosen = [n for n in nodes if n.state in TROUBLED and (not node or n.node_name == node)]
    return sorted(chosen, key=lambda n: n.node_name)


def _active(pull: PullStatus) -> bool:
    return pull.phase in ACTIVE_PHASES


def _keep_layers(held: PullStatus, fresh: PullStatus) -> PullStatus:
    """A collector's snapshot leaves out the layers of completed and failed pulls, which are
    final: a watcher that saw the pull finish keeps the layers it was sent then."""
    if fresh.layers or not held.layers or fresh.phase != held.phase or _active(fresh):
        return fresh
    return msgspec.structs.replace(fresh, layers=held.layers)


# --- Filtering and ordering: pure functions of a pull and a query ---------------------------


class Query(msgspec.Struct, frozen=True, kw_only=True):
    """What the user asked to see: the ``/`` filter, ``:`` scopes and the sort column."""

    text: str = ""
    node: str = ""
    namespace: str = ""
    phases: frozenset[str] = frozenset()
    sort: SortKey | None = None
    reverse: bool = False

    def sort_arrow(self) -> str:
        """``↓`` when larger values come first, as a column header shows it."""
        return "↓" if (self.sort in DESCENDING_SORTS) != self.reverse else "↑"

    def scope_label(self) -> str:
        """k9s-style title scope: ``all``, ``node=a``, ``ns=b``, ``failed``..."""
        parts = []
        if self.node:
            parts.append(f"node={self.node}")
        if self.namespace:
            parts.append(f"ns={self.namespace}")
        if self.phases == frozenset({"failed"}):
            parts.append("failed")
        elif self.phases == ACTIVE_PHASES:
            parts.append("active")
        return " ".join(parts) or "all"


def haystack(pull: PullStatus) -> str:
    """Everything the ``/`` filter searches, lower-cased once."""
    pods = " ".join(f"{p.namespace}/{p.pod_name}" for p in pull.pods)
    return f"{pull.image_ref} {pull.repository} {pull.node_name} {pods}".lower()


def matches(pull: PullStatus, query: Query) -> bool:
    if query.node and pull.node_name != query.node:
        return False
    if query.namespace and not any(p.namespace == query.namespace for p in pull.pods):
        return False
    if query.phases and pull.phase not in query.phases:
        return False
    return not query.text or query.text.lower() in haystack(pull)


def _age(pull: PullStatus, now: datetime) -> float:
    return (now - pull.started_at).total_seconds() if pull.started_at else 0.0


def _image_key(pull: PullStatus) -> str:
    return (pull.image_ref or pull.repository or pull.id).lower()


def sort_value(pull: PullStatus, key: SortKey, now: datetime) -> tuple[float | str, ...]:
    """Each key's natural direction is the one a user wants first: fastest, furthest along,
    soonest done, youngest; names alphabetical."""
    if key == "node":
        return (pull.node_name, _image_key(pull))
    if key == "image":
        return (_image_key(pull), pull.node_name)
    if key == "speed":
        return (-pull.bytes_per_sec,)
    if key == "progress":
        return (-pull.percent,)
    if key == "eta":
        eta = pull.eta_seconds
        return (0 if eta is not None else 1, eta or 0.0)
    return (_age(pull, now),)


def order(pulls: Iterable[PullStatus], query: Query, now: datetime) -> list[PullStatus]:
    """Active pulls first, whatever the sort: they are why anyone is watching. Without a sort
    column, start order keeps rows from jumping while they update."""
    chosen = [p for p in pulls if matches(p, query)]
    chosen.sort(key=lambda p: (p.started_at.timestamp() if p.started_at else 0.0, p.id))
    if query.sort is not None:
        sort_key = query.sort
        chosen.sort(key=lambda p: sort_value(p, sort_key, now), reverse=query.reverse)
    elif query.reverse:
        chosen.reverse()
    chosen.sort(key=lambda p: 0 if _active(p) else 1)
    return chosen
