"""Every node's pulls merged into one list with stable ids, collector-side rates and a lifecycle.

Everything here runs synchronously on the event loop, with no awaits and no locks: a report is
merged and its events are handed to the listeners before the next request is read, so the state
that a snapshot shows is always exactly the state that the events so far describe (plus progress
not yet flushed). Fanning events out to clients is the broker's job, not the store's.

Layering. This module lives outside ``pulltrace.collector`` because the demo runs it too (a
simulated cluster "through the real collector code"): it imports only the model and leaf
helpers, never the collector's server, the clients or the terminal UI.

Identity. A pull is keyed on its node by manifest digest; a ``resolving`` pull (an ingest whose
manifest is not committed yet) by its agent id until the manifest arrives, when the agent starts
a new pull under a new agent id and the collector folds it into the resolving one, so the
collector's id does not change. Collector ids are the first agent id seen for the pull: an agent
restart, which can change the agent id of an in-flight pull, keeps the collector's. A pull that
failed and is then resumed is a new pull with a new id, as the agent says.

Nodes. A node whose agent reports is ``ready``, or ``degraded`` while the agent says it cannot
read containerd (its pulls then keep their phases but show no speed: nobody can see them
move), and ``stale`` once the agent has been silent for three intervals. Every change of that
status (not of its last-seen time) is one node event; a node known only from kubelet has no
agent and no status.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import contextlib
import dataclasses
import hashlib
import math
import operator
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol, TypeVar

import msgspec

from pulltrace import rollup
from pulltrace.agent.sockets import unreachable
from pulltrace.model import (
    ACTIVE_PHASES,
    ERROR_MAX,
    ID_MAX,
    PODS_MAX,
    RATE_MAX,
    REASON_MAX,
    VERSION_MAX,
    AgentReport,
    EventType,
    ImageRef,
    LayerStatus,
    NodeEventType,
    NodeState,
    NodeStatus,
    PodRef,
    PullEvent,
    PullStatus,
    merge_layers,
    report_problem,
)
from pulltrace.rate import RateWindow

STALE_AFTER_INTERVALS = 3
"""The agent heartbeats every two intervals, so three silent intervals mean it is gone."""

Listener = Callable[[PullEvent], None]
MAX_PULLS = 20000
"""Pulls held, kubelet's rows included: a 5 000-node cluster's half hour of history is some
15 000 (bench/collector_memory.py), at about 5 KiB each with their layers."""
MAX_NODES = 5000
"""Nodes with an agent: Kubernetes supports clusters of up to 5 000 nodes."""


class InvalidReport(ValueError):
    """A report the schema let through but the store will not take; nothing was changed."""


class StoreFull(Exception):
    """A report would need more pulls or nodes than the caps allow, and nothing could be evicted
    to make room (every pull held is in flight, every node is reporting); nothing was changed."""


class Correlator(Protocol):
    """What the store needs from Kubernetes, so that it can be used and tested without a
    cluster; ``pulltrace.kube`` implements it structurally, the demo's simulated cluster too."""

    @property
    def synced(self) -> bool:
        """True once the watches have listed everything once; ``/readyz`` waits for it."""
        ...

    def match(self, node: str, repository: str, manifest_digest: str) -> tuple[list[PodRef], str]:
        """Pods on `node` waiting for that image, and the pod spec's full tagged reference ("" if
        none). `repository` is as the agent reports it: "<registry host without port>/<path>"
        (containerd drops the port from its distribution.source label), e.g.
        "docker.io/library/nginx"."""
        ...

    def kubelet_pulls(self) -> list[PullStatus]:
        """Phase-level pulls known only from kubelet Events and pod states: no bytes, totalKnown
        False, stable ids, nodeName, repository (same normalisation as above), imageRef, phase
        resolving/pulling/completed/failed, startedAt/completedAt, error (kubelet's message),
        pods."""
        ...

    def set_listener(self, fn: Callable[[], None]) -> None:
        """`fn` is called from another thread whenever match()/kubelet_pulls() may have
        changed."""
        ...


@dataclass(frozen=True, slots=True)
class NodeChange:
    kind: NodeEventType
    status: NodeStatus
    before: NodeState | None
    """The state last announced; None for a node not announced before."""


NodeListener = Callable[[NodeChange], None]
_TERMINAL = frozenset({"completed", "failed"})
_replace = msgspec.structs.replace


@dataclass(slots=True, eq=False)
class _Pull:
    id: str
    node: str
    key: str
    """Manifest digest, or ``ingest:<agent id>`` while resolving, or ``kubelet:<id>``."""
    base: PullStatus
    """The source's view with the collector's id, rates and percent, before correlation."""
    status: PullStatus
    """What clients see: ``base`` plus pods, tagged reference and kubelet's verdict."""
    first_seen: float
    source: Literal["agent", "kubelet"] = "agent"
    emitted: PullStatus | None = None
    emitted_at: float = -math.inf
    reported_at: float = 0.0
    finished_at: float | None = None
    agent_ids: set[str] = field(default_factory=set)
    rate: RateWindow = field(default_factory=RateWindow)
    layer_rates: dict[str, RateWindow] = field(default_factory=dict)
    layers_seen: bool = False
    """Whether the collector has seen this pull's layers yet: a resolving pull and kubelet's
    row have none."""
    layers_started: set[str] = field(default_factory=set)
    layers_done: set[str] = field(default_factory=set)
    pods: list[PodRef] = field(default_factory=list)
    tagged_ref: str = ""
    kubelet: dict[str, PullStatus] = field(default_factory=dict)
    """Kubelet's pulls folded into this one (a kubelet-only row holds its own here)."""
    summarised: tuple[PullStatus, PullStatus] | None = None
    """A finished ``status`` and that status without layers."""
    brief: tuple[PullStatus, PullStatus] | None = None
    sort_key: tuple[PullStatus, tuple[bool, float, str]] | None = None
    """A ``status`` and its place in the list order, which a list of thousands of pulls
    would otherwise compute again for every pull each time anything changed."""
    """A ``status`` and that status without layers, for the events that name one layer."""

    def checkpoint(self) -> tuple[object, ...]:
        """What to roll back to: every field, with what a merge mutates in place copied, but
        the rate windows, which a roll back starts afresh instead (copying them for every
        report would cost more than the merge; a fresh window only means the agent's own
        speed is shown until the collector has two samples again)."""
        values: list[Any] = list(_pull_fields(self))
        for i in _PULL_CONTAINERS:
            values[i] = values[i].copy()
        return tuple(values)

    def restore(self, saved: tuple[object, ...]) -> None:
        for name, value in zip(_PULL_FIELDS, saved, strict=True):
            setattr(self, name, value)
        self.rate = RateWindow()
        self.layer_rates = {}

    def without_layers(self) -> PullStatus:
        """The status with no layers: what an event about one layer, or a removal, carries."""
        status = self.status
        if not status.layers:
            return status
        if self.brief is None or self.brief[0] is not status:
            self.brief = (status, _replace(status, layers=[]))
        return self.brief[1]

    def summary(self) -> PullStatus:
        """The status without layers once it is final; made once, not for every snapshot,
        since a snapshot of a large history would otherwise allocate a struct per pull, and
        the garbage collector would pass over all of them again."""
        status = self.status
        if status.phase not in _TERMINAL or not status.layers:
            return status
        if self.summarised is None or self.summarised[0] is not status:
            self.summarised = (status, _replace(status, layers=[]))
        return self.summarised[1]

    @property
    def active(self) -> bool:
        return self.status.phase in ACTIVE_PHASES

    @property
    def order(self) -> tuple[bool, float]:
        started = self.status.started_at
        return (not self.active, -(started.timestamp() if started else self.first_seen))


_PULL_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(_Pull))
_pull_fields = operator.attrgetter(*_PULL_FIELDS)
_PULL_CONTAINERS = tuple(
    i
    for i, name in enumerate(_PULL_FIELDS)
    if name in {"agent_ids", "layers_started", "layers_done", "pods", "kubelet"}
)
"""The fields a merge changes in place (``layer_rates`` and ``rate`` start afresh instead)."""


@dataclass(slots=True, eq=False)
class _Node:
    name: str
    interval: float = 1.0
    last_seen: float | None = None
    """None for a node known only from kubelet."""
    connected: bool = False
    agent_version: str = ""
    containerd_reachable: bool = True
    containerd_socket: str = ""
    containerd_error: str = ""
    announced: NodeStatus | None = None
    """The status of the node's last event; None before its agent first reported."""
    announced_key: tuple[object, ...] = ()
    pulls: dict[str, _Pull] = field(default_factory=dict)
    by_agent_id: dict[str, _Pull] = field(default_factory=dict)
    tombstones: set[str] = field(default_factory=set)
    """Agent ids of finished pulls already removed, ignored while the agent still reports them."""


_NODE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(_Node))
_node_fields = operator.attrgetter(*_NODE_FIELDS)
_NODE_CONTAINERS = tuple(
    i for i, name in enumerate(_NODE_FIELDS) if name in {"pulls", "by_agent_id", "tombstones"}
)


class PullStore:
    def __init__(
        self,
        history_ttl: float = 1800.0,
        correlator: Correlator | None = None,
        clock: Callable[[], float] = time.time,
        progress_interval: float = 0.5,
        *,
        stale_check_interval: float = 1.0,
        max_pulls: int = MAX_PULLS,
        max_nodes: int = MAX_NODES,
    ) -> None:
        self.history_ttl = history_ttl
        self.max_pulls = max_pulls
        self.max_nodes = max_nodes
        self.progress_interval = progress_interval
        self.stale_check_interval = stale_check_interval
        self._correlator = correlator
        self._clock = clock
        self._listeners: list[Listener] = []
        self._node_listeners: list[NodeListener] = []
        self._pulls: dict[str, _Pull] = {}
        self._nodes: dict[str, _Node] = {}
        self._dirty: dict[str, _Pull] = {}
        self._history: deque[tuple[float, str]] = deque()
        self._kubelet_home: dict[str, _Pull] = {}
        self._kubelet_tombstones: set[str] = set()
        self._correlation_stale = correlator is not None
        self._loop: asyncio.AbstractEventLoop | None = None
        if correlator is not None:
            correlator.set_listener(self._correlation_listener)
        self._next_stale_check = -math.inf
        self._version = 0
        self._sorted: tuple[int, list[_Pull], list[PullStatus]] = (-1, [], [])
        self._now = 0.0
        self._now_dt: datetime | None = None
        self._held: list[PullEvent | NodeChange] | None = None
        """Notifications of the report being merged, sent once all of it is."""
        self._nodes_epoch = 0
        """Counts nodes going silent or away: what can make room under the node cap."""
        self._nodes_full: int | None = None
        """The epoch at which the node cap was last found full with nothing to evict."""
        self._journal: list[Callable[[], object]] | None = None
        """How to undo what the merge did to the store's own tables, newest last."""

    # -- reading ----------------------------------------------------------------------------

    def pulls(self) -> list[PullStatus]:
        """Active first, then newest; sorted at most once per change."""
        return list(self._ordered()[1])

    def snapshot(self) -> list[PullStatus]:
        """What a new event stream client starts from: ``pulls()``, without the layers of
        completed and failed pulls. Those are final, and are most of a large cluster's 30
        minutes of history: with their layers a snapshot would be hundreds of megabytes.
        ``get`` still has them; stale pulls keep theirs, since they may carry on."""
        return [p.summary() for p in self._ordered()[0]]

    def _ordered(self) -> tuple[list[_Pull], list[PullStatus]]:
        version, held, statuses = self._sorted
        if version != self._version:
            held = sorted(self._pulls.values(), key=_sort_key)
            statuses = [p.status for p in held]
            self._sorted = (self._version, held, statuses)
        return held, statuses

    def page(
        self, after: str, limit: int, keep: Callable[[PullStatus], bool]
    ) -> tuple[list[PullStatus], str]:
        """Up to ``limit`` pulls that ``keep`` takes, in ``pulls()``'s order, from after the
        position the token ``after`` names ("" for the start); and the token of the next
        page, "" when there is none. A token names a place in the order, not a copy of the
        list: a pull that moves between pages (it finished) may be missed or seen twice, as
        with the Kubernetes API's inconsistent continuations. Raises ValueError for a token
        this store did not make."""
        held, _ = self._ordered()
        start = bisect.bisect_right(held, _token_key(after), key=_sort_key) if after else 0
        chosen: list[PullStatus] = []
        for i in range(start, len(held)):
            status = held[i].status
            if not keep(status):
                continue
            if len(chosen) == limit:
                # Everything between the last one chosen and this one was filtered out.
                return chosen, _token(_sort_key(held[i - 1]))
            chosen.append(status)
        return chosen, ""

    def get(self, pull_id: str) -> PullStatus | None:
        pull = self._pulls.get(pull_id)
        return pull.status if pull else None

    def active_count(self) -> int:
        return sum(1 for p in self._pulls.values() if p.active)

    def connected_agents(self) -> int:
        return sum(1 for n in self._nodes.values() if n.connected)

    def nodes(self) -> list[NodeStatus]:
        """The nodes whose agents have reported, by name, each seen last when it last was."""
        return [
            _replace(node.announced, last_seen=self._datetime(node.last_seen))
            for node in sorted(self._nodes.values(), key=lambda n: n.name)
            if node.announced is not None and node.last_seen is not None
        ]

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def add_node_listener(self, fn: NodeListener) -> None:
        self._node_listeners.append(fn)

    def correlation_changed(self) -> None:
        """The next tick re-matches pods and re-reads kubelet's pulls. Call it on the loop that
        runs the ticks; the correlator's own notifications get there by themselves."""
        self._correlation_stale = True

    def _correlation_listener(self) -> None:
        """Runs on a watch thread: hops onto the loop the ticks run on. Without one (before the
        first tick, or a store ticked outside asyncio) it only sets the flag the next tick
        reads, which is a single atomic store."""
        loop = self._loop
        if loop is None:
            self._correlation_stale = True
            return
        with contextlib.suppress(RuntimeError):  # that loop has closed: nothing to update
            loop.call_soon_threadsafe(self.correlation_changed)

    # -- writing ----------------------------------------------------------------------------

    def apply_report(self, report: AgentReport) -> None:
        """Merge one node's full report, all of it or nothing: raises InvalidReport or
        StoreFull having changed nothing, and should the merge itself fail, puts back what it
        had changed and tells no listener anything.

        Over a cap, what goes first is the pull that finished longest ago (completed, failed,
        or stale), then the node whose agent has been silent longest, with its pulls. Pulls in
        flight and nodes that report are never evicted: a new pull or node is refused instead."""
        problem = report_problem(report)
        if problem is not None:
            raise InvalidReport(problem)
        now = self._begin()
        self._make_room(report)
        saved = self._checkpoint(report)
        held: list[PullEvent | NodeChange] = []
        journal: list[Callable[[], object]] = []
        self._held, self._journal = held, journal
        try:
            self._apply(report, now)
        except BaseException:
            for undo in reversed(journal):
                undo()
            saved.restore()
            self._version += 1
            raise
        finally:
            self._held = self._journal = None
        for news in held:
            self._deliver(news)

    def _checkpoint(self, report: AgentReport) -> _Checkpoint:
        """What the merge of this report can change in place: the node, the pulls it names,
        and the node's pulls in flight (which a new agent id may continue or absorb). The cost
        is that of the report, plus a copy of the node's own tables."""
        node = self._nodes.get(report.node_name)
        if node is None:
            return _Checkpoint(None, None, [], len(self._history), self._history)
        pulls = {id(p): p for p in node.pulls.values() if p.status.phase not in _TERMINAL}
        for p in report.pulls:
            known = node.by_agent_id.get(p.id)
            if known is not None and (known.emitted is None or known.status.phase not in _TERMINAL):
                pulls[id(known)] = known  # a finished pull is final: a merge only reads it
        values: list[Any] = list(_node_fields(node))
        for i in _NODE_CONTAINERS:
            values[i] = values[i].copy()
        saved_node = tuple(values)
        return _Checkpoint(
            node,
            saved_node,
            [(p, p.checkpoint()) for p in pulls.values()],
            len(self._history),
            self._history,
        )

    def _make_room(self, report: AgentReport) -> None:
        """Evicts what the caps' order allows to make room for this report's new node and
        pulls, or raises StoreFull having evicted nothing."""
        node = self._nodes.get(report.node_name)
        new_node = node is None or node.last_seen is None  # kubelet-only until now counts
        known = node.by_agent_id if node is not None else {}
        tombstones = node.tombstones if node is not None else set()
        new_pulls = sum(1 for p in report.pulls if p.id not in known and p.id not in tombstones)
        pulls_over = len(self._pulls) + new_pulls - self.max_pulls
        nodes_over = len(self._nodes) + new_node - self.max_nodes
        if new_node and nodes_over > 0 and self._nodes_full == self._nodes_epoch:
            # Full at the last look, and no node has gone silent or away since: a flood of
            # new node names is refused without a scan of every node each time.
            raise StoreFull(_full("nodes", self.max_nodes))
        if nodes_over > 0:  # only nodes with an agent count; kubelet names the others
            agents = sum(1 for n in self._nodes.values() if n.last_seen is not None)
            nodes_over = agents + new_node - self.max_nodes
        if pulls_over <= 0 and nodes_over <= 0:
            return
        finished = self._finished_order(pulls_over) if pulls_over > 0 else []
        silent = self._silent_nodes(report.node_name) if nodes_over > 0 else []
        if len(silent) < nodes_over:
            self._nodes_full = self._nodes_epoch
            raise StoreFull(_full("nodes", self.max_nodes))
        if len(finished) < pulls_over:
            raise StoreFull(_full("pulls", self.max_pulls))
        for pull in finished:
            if pull.id in self._pulls:
                self._remove(pull)
        for gone in silent[: max(0, nodes_over)]:
            self._forget_node(gone)

    def _finished_order(self, wanted: int) -> list[_Pull]:
        """Up to ``wanted`` finished pulls (completed, failed, stale), the one finished longest
        ago first: the history is in that order already."""
        pulls: list[_Pull] = []
        for finished_at, pull_id in self._history:
            pull = self._pulls.get(pull_id)
            if pull is not None and pull.finished_at == finished_at:
                pulls.append(pull)
                if len(pulls) == wanted:
                    break
        return pulls

    def _silent_nodes(self, keep: str) -> list[_Node]:
        """Nodes whose agent stopped reporting, the one silent longest first."""
        silent = [
            n
            for n in self._nodes.values()
            if n.last_seen is not None and not n.connected and n.name != keep
        ]
        return sorted(silent, key=lambda n: n.last_seen or 0.0)

    def _forget_node(self, node: _Node) -> None:
        for pull in list(node.pulls.values()):
            self._remove(pull, tombstone=False)
        del self._nodes[node.name]
        self._nodes_epoch += 1
        if node.announced is not None:
            self._emit_node("node.removed", node.announced, node.announced.state)

    def _apply(self, report: AgentReport, now: float) -> None:
        name = report.node_name
        if name not in self._nodes:
            self._undo(lambda: self._nodes.pop(name, None))
        node = self._node(name)
        node.interval = report.interval_seconds
        node.last_seen = now
        node.connected = True
        node.agent_version = report.agent_version[:VERSION_MAX]
        node.containerd_reachable = report.containerd_reachable
        node.containerd_socket = report.containerd_socket
        node.containerd_error = report.containerd_error
        self._announce(node)
        ts = report.timestamp.timestamp()
        reported = {p.id for p in report.pulls}
        node.tombstones &= reported
        for p in report.pulls:
            if p.id in node.tombstones:
                if p.phase not in ACTIVE_PHASES:
                    continue
                # Expired while its node was away, and still downloading: show it again.
                node.tombstones.discard(p.id)
            pull = node.by_agent_id.get(p.id) or self._claim(node, p, reported)
            self._merge(node, pull, p, ts)

    def tick(self) -> None:
        now = self._begin()
        if self._loop is None:
            with contextlib.suppress(RuntimeError):  # ticked outside asyncio
                self._loop = asyncio.get_running_loop()
        if self._correlation_stale and self._correlator is not None:
            self._correlation_stale = False
            self._correlate(self._correlator)
        if now >= self._next_stale_check:
            self._next_stale_check = now + self.stale_check_interval
            self._check_nodes(now)
        due = now - self.progress_interval
        for pull in [p for p in self._dirty.values() if p.emitted_at <= due]:
            self._emit("pull.progress", pull)
        self._expire(now)

    def restore(self, pulls: Iterable[PullStatus]) -> int:
        """Finished pulls from the history database, after a restart, so that clients see them
        again until they expire as if the collector had never stopped. No events: only clients
        that connect later ask, and they start from the snapshot. The pull's id stays its
        agent id on its node, so the agent's next report of it joins it rather than adding a
        second row. Call it before the first report. Returns how many were restored."""
        now = self._begin()
        restored: list[tuple[float, _Pull]] = []
        for p in pulls:
            if p.phase not in _TERMINAL or p.id in self._pulls:
                continue
            moment = p.completed_at or p.started_at
            finished = min(now, moment.timestamp() if moment else now)
            if finished + self.history_ttl <= now:
                continue
            node = self._node(p.node_name)
            pull = _Pull(p.id, node.name, p.manifest_digest or f"restored:{p.id}", p, p, finished)
            pull.emitted, pull.emitted_at, pull.finished_at = p, finished, finished
            pull.layers_seen = True
            pull.agent_ids.add(p.id)
            node.by_agent_id[p.id] = pull
            node.pulls[p.id] = pull
            self._pulls[p.id] = pull
            restored.append((finished, pull))
        restored.sort(key=lambda item: item[0])
        merged = sorted([*self._history, *((t, pull.id) for t, pull in restored)])
        self._history = deque(merged)
        self._version += 1
        return len(restored)

    # -- merging agent pulls ----------------------------------------------------------------

    def _claim(self, node: _Node, p: PullStatus, reported: set[str]) -> _Pull:
        """The collector pull that a new agent id continues, or a new one."""
        pull = self._continued(node, p, reported) if p.manifest_digest else None
        if pull is None:
            key = p.manifest_digest or f"ingest:{p.id}"
            pull_id = p.id if p.id and p.id not in self._pulls else _fresh_id(node.name, key, p)
            pull = _Pull(pull_id, node.name, key, p, p, self._now)
            self._pulls[pull_id] = pull
            self._undo(lambda: self._pulls.pop(pull_id, None))
            node.pulls[pull_id] = pull
        else:
            pull.key = p.manifest_digest
            pull.source = "agent"
        pull.agent_ids.add(p.id)
        node.by_agent_id[p.id] = pull
        return pull

    def _continued(self, node: _Node, p: PullStatus, reported: set[str]) -> _Pull | None:
        """An unfinished pull of the same image (the agent restarted, or the node went stale),
        else a resolving pull this one grew out of, else kubelet's row for the same image."""
        digests = {p.manifest_digest, p.image_ref.rpartition("@")[2]}
        digests.update(layer.digest for layer in p.layers)
        resolving = row = None
        for pull in node.pulls.values():
            if pull.status.phase in _TERMINAL:
                continue
            if pull.source == "kubelet":
                if row is None and p.repository and pull.base.repository == p.repository:
                    row = pull
            elif pull.key == p.manifest_digest:
                return pull
            elif (
                resolving is None
                and pull.status.phase == "resolving"
                and not pull.agent_ids & reported
                and any(layer.digest in digests for layer in pull.base.layers)
            ):
                resolving = pull
        return resolving or row

    def _merge(self, node: _Node, pull: _Pull, p: PullStatus, ts: float) -> None:
        pull.reported_at = self._now
        if pull.status.phase in _TERMINAL and pull.emitted is not None:
            return  # finished is final: a resumed download is a new pull with a new agent id
        previous = pull.base
        identity_changed = (previous.repository, previous.manifest_digest) != (
            p.repository,
            p.manifest_digest,
        )
        if identity_changed:
            # What the windows measured was another blob (the manifest, while resolving).
            pull.rate = RateWindow()
            pull.layer_rates.clear()
        pull.base = self._agent_view(pull, p, ts, node.containerd_reachable)
        if pull.emitted is None or identity_changed:
            self._match(pull)
            if p.repository:
                self._absorb_rows(node, pull)
        self._refresh(pull)

    def _agent_view(self, pull: _Pull, p: PullStatus, ts: float, seen: bool) -> PullStatus:
        """Rates from the collector's own windows over the agent's timestamps (immune to network
        jitter), the agent's figure until two samples exist; percent that never goes back.
        While the agent cannot see containerd (``seen`` false) an active pull has no speed and
        its windows start again when it can."""
        phase = p.phase
        if phase in ACTIVE_PHASES and not seen:
            pull.rate = RateWindow()
            pull.layer_rates.clear()
            speed = 0.0
            layers = [
                x if not x.bytes_per_sec else _replace(x, bytes_per_sec=0.0) for x in p.layers
            ]
        elif phase in ACTIVE_PHASES:
            pull.rate.add(ts, p.downloaded_bytes)
            speed = pull.rate.rate() or p.bytes_per_sec
            speed = min(speed, RATE_MAX)
            layers = [self._layer_view(pull, layer, ts) for layer in p.layers]
        else:
            speed, layers = p.bytes_per_sec, p.layers
            pull.layer_rates.clear()
        remaining = p.total_bytes - p.downloaded_bytes - p.cached_bytes
        eta = rollup.eta(phase, remaining, speed)
        shown = pull.base.percent if pull.emitted is not None else 0.0
        have = p.downloaded_bytes + p.cached_bytes
        percent = rollup.percent(phase, have, p.total_bytes, floor=max(p.percent, shown))
        return _replace(
            p,
            id=pull.id,
            phase=phase,
            bytes_per_sec=speed,
            eta_seconds=eta,
            percent=percent,
            layers=layers,
        )

    @staticmethod
    def _layer_view(pull: _Pull, layer: LayerStatus, ts: float) -> LayerStatus:
        if layer.cached or layer.completed_at is not None or layer.started_at is None:
            pull.layer_rates.pop(layer.digest, None)
            return layer
        window = pull.layer_rates.get(layer.digest)
        if window is None:
            window = pull.layer_rates[layer.digest] = RateWindow()
        window.add(ts, layer.downloaded_bytes)
        speed = window.rate() or layer.bytes_per_sec
        if speed > RATE_MAX:  # a hostile agent's timestamps a nanosecond apart
            speed = RATE_MAX
        return layer if speed == layer.bytes_per_sec else _replace(layer, bytes_per_sec=speed)

    # -- correlation ------------------------------------------------------------------------

    def _match(self, pull: _Pull) -> None:
        if self._correlator is None or not pull.base.repository:
            return
        base = pull.base
        pods, ref = self._correlator.match(base.node_name, base.repository, base.manifest_digest)
        pull.pods, pull.tagged_ref = _fit(_Match(pods, ref), _Match([], "")).values()

    def _absorb_rows(self, node: _Node, pull: _Pull) -> None:
        """Kubelet rows shown while the agent had not named the image yet join its pull."""
        for row in list(node.pulls.values()):
            if (
                row.source == "kubelet"
                and row.active
                and row.base.repository == pull.base.repository
                and _overlap(row.base, pull.base)
            ):
                self._move_kubelet(row, pull)

    def _move_kubelet(self, row: _Pull, host: _Pull) -> None:
        homes = {kid: self._kubelet_home.get(kid) for kid in row.kubelet}
        self._undo(lambda: _put_back(self._kubelet_home, homes))
        for kid, k in row.kubelet.items():
            host.kubelet[kid] = k
            self._kubelet_home[kid] = host
        row.kubelet.clear()
        self._remove(row, tombstone=False)

    def _correlate(self, correlator: Correlator) -> None:
        touched: dict[str, _Pull] = {}
        for pull in self._pulls.values():
            if pull.source == "agent" and pull.active:
                self._match(pull)
                touched[pull.id] = pull
        seen: set[str] = set()
        for k in correlator.kubelet_pulls():
            if len(k.error) > ERROR_MAX:
                k = _replace(k, error=k.error[:ERROR_MAX])
            seen.add(k.id)
            if _fit(k, None) is None:
                continue  # a pod spec's image no client could decode (a space, a control)
            if k.id not in self._kubelet_tombstones:
                pull = self._place_kubelet(k)
                touched[pull.id] = pull
        for kid in [kid for kid in self._kubelet_home if kid not in seen]:
            home = self._kubelet_home.pop(kid)
            home.kubelet.pop(kid, None)
            if home.source == "kubelet" and home.active:
                self._remove(home, tombstone=False)
            else:
                touched[home.id] = home
        self._kubelet_tombstones &= seen
        for pull in touched.values():
            if pull.id in self._pulls:
                self._refresh(pull)

    def _place_kubelet(self, k: PullStatus) -> _Pull:
        """Into the agent pull it describes when there is one, else into a row of its own.
        Once folded into an agent pull it stays there; an active row moves when an agent pull
        shows, a finished row stays history."""
        home = self._kubelet_home.get(k.id)
        if home is not None and home.source == "agent":
            home.kubelet[k.id] = k
            return home
        host = self._fold_target(k) if home is None or home.active else None
        if host is None:
            return self._kubelet_row(home, k)
        if home is not None:
            self._move_kubelet(home, host)
        host.kubelet[k.id] = k
        self._kubelet_home[k.id] = host
        return host

    def _fold_target(self, k: PullStatus) -> _Pull | None:
        """An agent pull on the same node, of the same repository, at the same time: an active
        one first, else the newest. Without the time check an earlier pull of the image would
        hide, say, a later one that failed before its first byte."""
        node = self._nodes.get(k.node_name)
        if node is None or not k.repository:
            return None
        best: _Pull | None = None
        for pull in node.pulls.values():
            if (
                pull.source != "agent"
                or pull.base.repository != k.repository
                or not _overlap(pull.base, k)
            ):
                continue
            if pull.active:
                return pull
            if best is None or pull.order < best.order:
                best = pull
        return best

    def _kubelet_row(self, row: _Pull | None, k: PullStatus) -> _Pull:
        if row is None:
            node = self._node(k.node_name)
            row_id = k.id if k.id and k.id not in self._pulls else _fresh_id(k.node_name, "k", k)
            row = _Pull(row_id, k.node_name, f"kubelet:{k.id}", k, k, self._now, "kubelet")
            self._pulls[row_id] = row
            node.pulls[row_id] = row
            self._kubelet_home[k.id] = row
        row.kubelet[k.id] = k
        if row.status.phase not in _TERMINAL:
            row.base = _replace(k, id=row.id)
        return row

    def _overlay(self, pull: _Pull) -> PullStatus:
        """Correlation on top of the source's view: pods, the tagged reference, and kubelet's
        failure when the image did not complete."""
        base = pull.base
        pods = _union(base.pods, pull.pods, *(k.pods for k in pull.kubelet.values()))
        ref = pull.tagged_ref or next(
            (k.image_ref for k in pull.kubelet.values() if k.image_ref), base.image_ref
        )
        phase, error = base.phase, base.error
        if phase != "completed":
            failed = next((k for k in pull.kubelet.values() if k.phase == "failed"), None)
            if failed is not None:
                phase, error = "failed", failed.error or error
        if pods == base.pods and ref == base.image_ref and phase == base.phase:
            return base
        eta = None if phase == "failed" else base.eta_seconds
        return _replace(base, pods=pods, image_ref=ref, phase=phase, error=error, eta_seconds=eta)

    # -- lifecycle --------------------------------------------------------------------------

    def _refresh(self, pull: _Pull) -> None:
        """Recompute what clients see and emit what changed: lifecycle events at once, progress
        at most every ``progress_interval`` per pull, unless it is news (see ``_news``)."""
        status = self._overlay(pull)
        previous = pull.emitted
        pull.status = status
        self._version += 1
        phase = status.phase
        if previous is None and phase not in _TERMINAL:
            self._emit("pull.started", pull)
        if phase != "resolving":
            sent = self._layer_events(pull, status)
            if sent and pull.emitted is not None:
                self._sent_layers(pull, status, sent)
        if phase in _TERMINAL or phase == "stale":
            if pull.finished_at is None:
                pull.finished_at = self._now
                self._history.append((self._now, pull.id))
        else:
            pull.finished_at = None
        if phase in _TERMINAL and (previous is None or previous.phase not in _TERMINAL):
            self._emit("pull.completed" if phase == "completed" else "pull.failed", pull)
        elif pull.emitted is not None and status != pull.emitted:
            if _news(pull.emitted, status) or self._now - pull.emitted_at >= self.progress_interval:
                self._emit("pull.progress", pull)
            elif pull.id not in self._dirty:
                self._undo(lambda: self._dirty.pop(pull.id, None))
                self._dirty[pull.id] = pull

    def _sent_layers(self, pull: _Pull, status: PullStatus, sent: list[LayerStatus]) -> None:
        """What a client holds after this refresh's layer events: every field of ``status``,
        and the layers it had with the ones sent merged in. When that is all of ``status``
        (the usual case: only those layers moved), no progress event has to follow."""
        layers = merge_layers(pull.emitted.layers if pull.emitted else [], sent)
        pull.emitted = status if layers == status.layers else _replace(status, layers=layers)
        pull.emitted_at = self._now
        if pull.emitted is status and pull.id in self._dirty:
            self._undo(lambda: self._dirty.__setitem__(pull.id, pull))
            del self._dirty[pull.id]

    def _layer_events(self, pull: _Pull, status: PullStatus) -> list[LayerStatus]:
        """Events for what the collector sees a layer do. Layers already complete when it
        first sees a pull's layers, and every layer of a pull first seen finished, are history
        that the pull's first event already shows: after a collector restart every agent's
        first report names every pull it still lists, and a dozen events for each of those
        would reach every client at once."""
        if not pull.layers_seen and status.layers:
            pull.layers_seen = True
            finished = status.phase in _TERMINAL
            for layer in status.layers:
                if layer.completed_at is not None or finished:
                    pull.layers_started.add(layer.digest)
                    pull.layers_done.add(layer.digest)
        sent: list[LayerStatus] = []
        for layer in status.layers:
            if layer.cached:
                continue
            digest = layer.digest
            done = layer.completed_at is not None
            began = done or layer.started_at is not None or layer.downloaded_bytes > 0
            if began and digest not in pull.layers_started:
                pull.layers_started.add(digest)
                self._emit("layer.started", pull, layer)
                sent.append(layer)
            if done and digest not in pull.layers_done:
                pull.layers_done.add(digest)
                self._emit("layer.completed", pull, layer)
                sent.append(layer)
        return sent

    def _check_nodes(self, now: float) -> None:
        """Active pulls of a silent node go stale; so does a pull its live node stopped
        reporting, except a resolving one, whose metadata finished and whose image pull never
        followed: that one is removed."""
        for name in list(self._nodes):
            node = self._nodes[name]
            if node.last_seen is None:
                if not node.pulls:
                    del self._nodes[name]
                    self._nodes_epoch += 1
                continue
            limit = STALE_AFTER_INTERVALS * node.interval
            silent = now - node.last_seen > limit
            if node.connected and silent:
                self._nodes_epoch += 1
            node.connected = not silent
            self._announce(node)
            for pull in list(node.pulls.values()):
                if pull.source != "agent" or not pull.active or now - pull.reported_at <= limit:
                    continue
                if not silent and pull.status.phase == "resolving":
                    self._remove(pull)
                else:
                    self._mark_stale(pull)
            if silent and not node.pulls and now - node.last_seen > limit + self.history_ttl:
                del self._nodes[name]
                self._nodes_epoch += 1
                if node.announced is not None:
                    self._emit_node("node.removed", node.announced, node.announced.state)

    def _announce(self, node: _Node) -> None:
        """A node event when the node's status changed (its last-seen time aside). Runs for
        every report: what it depends on is compared first, as one tuple."""
        key = (
            node.connected,
            node.containerd_reachable,
            node.containerd_socket,
            node.containerd_error,
            node.agent_version,
            node.interval,
        )
        if key == node.announced_key:
            return
        node.announced_key = key
        error = ""
        state: NodeState = "ready"
        if not node.connected:
            state = "stale"
            limit = STALE_AFTER_INTERVALS * node.interval
            error = f"no report from its agent for {STALE_AFTER_INTERVALS} intervals ({limit:g}s)"
        elif not node.containerd_reachable:
            state = "degraded"
            where = node.containerd_socket or "its socket"
            error = unreachable(where, node.containerd_error or "no reason given")
        error = error[:REASON_MAX]
        before = node.announced
        if before is not None and (
            before.state,
            before.containerd_reachable,
            before.containerd_socket,
            before.error,
            before.agent_version,
        ) == (state, node.containerd_reachable, node.containerd_socket, error, node.agent_version):
            return
        node.announced = NodeStatus(
            node_name=node.name,
            state=state,
            containerd_reachable=node.containerd_reachable,
            containerd_socket=node.containerd_socket,
            error=error,
            agent_version=node.agent_version,
            last_seen=self._datetime(node.last_seen),
        )
        self._emit_node("node.changed", node.announced, before.state if before else None)

    def _emit_node(self, kind: NodeEventType, status: NodeStatus, before: NodeState | None) -> None:
        self._publish(NodeChange(kind, status, before))

    def _mark_stale(self, pull: _Pull) -> None:
        """Not failed: nobody knows; the node may come back and report it again."""
        pull.base = _replace(pull.base, phase="stale", bytes_per_sec=0.0, eta_seconds=None)
        self._refresh(pull)

    def _expire(self, now: float) -> None:
        history = self._history
        while history and history[0][0] + self.history_ttl <= now:
            finished_at, pull_id = history.popleft()
            pull = self._pulls.get(pull_id)
            if pull is not None and pull.finished_at == finished_at:
                self._remove(pull)

    def _remove(self, pull: _Pull, *, tombstone: bool = True) -> None:
        """Forget a pull and tell clients; its agent and kubelet ids are remembered until their
        sources stop reporting them, so that a report does not bring it back."""
        del self._pulls[pull.id]
        dirty = self._dirty.pop(pull.id, None)
        homes = {kid: self._kubelet_home.get(kid) for kid in pull.kubelet}
        self._undo(lambda: self._unremove(pull, dirty, homes))
        self._version += 1
        node = self._nodes.get(pull.node)
        if node is not None:
            node.pulls.pop(pull.id, None)
            for agent_id in pull.agent_ids:
                node.by_agent_id.pop(agent_id, None)
                if tombstone:
                    node.tombstones.add(agent_id)
        for kid in pull.kubelet:
            self._kubelet_home.pop(kid, None)
            if tombstone:
                self._kubelet_tombstones.add(kid)
        self._emit("pull.removed", pull)

    def _unremove(self, pull: _Pull, dirty: _Pull | None, homes: dict[str, _Pull | None]) -> None:
        """Undoes ``_remove`` (the node's own tables come back with the node's checkpoint)."""
        self._pulls[pull.id] = pull
        if dirty is not None:
            self._dirty[pull.id] = dirty
        _put_back(self._kubelet_home, homes)
        self._kubelet_tombstones.difference_update(homes)

    def _undo(self, fn: Callable[[], object]) -> None:
        if self._journal is not None:
            self._journal.append(fn)

    def _emit(self, kind: EventType, pull: _Pull, layer: LayerStatus | None = None) -> None:
        """A layer's event and a removal carry the pull without its layers: the one layer that
        changed is ``layer``, and a removed pull needs only its id. So a pull of a thousand
        layers costs a thousand small events, not a thousand copies of itself. Every other
        event carries the whole pull, so a client's copy is exact again after it."""
        partial = layer is not None or kind == "pull.removed"
        status = pull.without_layers() if partial else pull.status
        if not partial:
            pull.emitted = status
            pull.emitted_at = self._now
            if pull.id in self._dirty:
                self._undo(lambda: self._dirty.__setitem__(pull.id, pull))
                del self._dirty[pull.id]
        if self._now_dt is None:
            self._now_dt = datetime.fromtimestamp(self._now, UTC)
        event = PullEvent(
            timestamp=self._now_dt, type=kind, node_name=status.node_name, pull=status, layer=layer
        )
        self._publish(event)

    def _publish(self, news: PullEvent | NodeChange) -> None:
        """Held while a report is applied, so that a report refused halfway says nothing."""
        if self._held is not None:
            self._held.append(news)
        else:
            self._deliver(news)

    def _deliver(self, news: PullEvent | NodeChange) -> None:
        if isinstance(news, PullEvent):
            for fn in self._listeners:
                fn(news)
        else:
            for on_node in self._node_listeners:
                on_node(news)

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _datetime(t: float | None) -> datetime | None:
        return None if t is None else datetime.fromtimestamp(t, UTC)

    def _begin(self) -> float:
        self._now = self._clock()
        self._now_dt = None
        return self._now

    def _node(self, name: str) -> _Node:
        node = self._nodes.get(name)
        if node is None:
            node = self._nodes[name] = _Node(name)
        return node


@dataclass(slots=True, eq=False)
class _Checkpoint:
    """A node and its pulls as they were before a report's merge began."""

    node: _Node | None
    saved_node: tuple[object, ...] | None
    pulls: list[tuple[_Pull, tuple[object, ...]]]
    history_length: int
    history: deque[tuple[float, str]]

    def restore(self) -> None:
        if self.node is not None and self.saved_node is not None:
            for name, value in zip(_NODE_FIELDS, self.saved_node, strict=True):
                setattr(self.node, name, value)
        for pull, saved in self.pulls:
            pull.restore(saved)
        while len(self.history) > self.history_length:
            self.history.pop()


_SortKey = tuple[bool, float, str]
_TOKEN = msgspec.json.Decoder(tuple[bool, float, Annotated[str, msgspec.Meta(max_length=ID_MAX)]])


def _sort_key(pull: _Pull) -> _SortKey:
    """Active first, then newest, then by id: a total order, so a page can start after one."""
    cached = pull.sort_key
    if cached is not None and cached[0] is pull.status:
        return cached[1]
    key = (*pull.order, pull.id)
    pull.sort_key = (pull.status, key)
    return key


def _token(last: _SortKey) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(last)).decode().rstrip("=")


def _token_key(token: str) -> _SortKey:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return _TOKEN.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError) as err:
        raise ValueError(f"invalid continue token {token[:64]!r}") from err


class _Match(msgspec.Struct, array_like=True):
    """What correlation adds to a pull, checked against the wire's bounds like a pull."""

    pods: Annotated[list[PodRef], msgspec.Meta(max_length=PODS_MAX)]
    ref: ImageRef

    def values(self) -> tuple[list[PodRef], str]:
        return self.pods, self.ref


_S = TypeVar("_S", bound=msgspec.Struct)
_D = TypeVar("_D")


def _fit(value: _S, default: _D) -> _S | _D:
    """``value`` when it passes the wire schema, else ``default``. Agents' reports are checked
    as they are decoded; what Kubernetes says (kubelet's pulls, a pod spec's image) is checked
    here, so that the collector never serves what its own clients would refuse to decode."""
    try:
        return msgspec.json.decode(msgspec.json.encode(value), type=type(value))
    except msgspec.ValidationError:
        return default


def _full(what: str, cap: int) -> str:
    return (
        f"the collector holds its maximum of {cap} {what} and none can be evicted"
        " (every one is in flight or reporting); try again later"
    )


def _put_back(table: dict[str, _Pull], entries: dict[str, _Pull | None]) -> None:
    for key, value in entries.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


CLOCK_SLACK = 2.0
"""Seconds: kubelet's Event times are whole seconds; containerd's are exact."""


def _overlap(a: PullStatus, b: PullStatus) -> bool:
    """Whether two views can be of one pull, by their start and end times; an open end
    overlaps everything after its start."""
    a_start, b_start = _ts(a.started_at, -math.inf), _ts(b.started_at, -math.inf)
    a_end, b_end = _ts(a.completed_at, math.inf), _ts(b.completed_at, math.inf)
    return a_start <= b_end + CLOCK_SLACK and b_start <= a_end + CLOCK_SLACK


def _ts(moment: datetime | None, default: float) -> float:
    return moment.timestamp() if moment else default


def _news(before: PullStatus, after: PullStatus) -> bool:
    """Changes that are sent at once rather than coalesced: the phase, and what correlation
    learns (pods, tagged reference, kubelet's error)."""
    return (
        before.phase != after.phase
        or before.error != after.error
        or before.image_ref != after.image_ref
        or before.pods != after.pods
    )


def _union(*groups: Iterable[PodRef]) -> list[PodRef]:
    seen: dict[tuple[str, str, str], PodRef] = {}
    for group in groups:
        for pod in group:
            seen.setdefault((pod.namespace, pod.pod_name, pod.container), pod)
    return list(seen.values())


def _fresh_id(node: str, key: str, p: PullStatus) -> str:
    """Only when a source's id is empty or already names another pull."""
    raw = f"{node}|{key}|{p.id}|{time.time_ns()}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]
