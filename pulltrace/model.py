"""The v1 wire schema: every struct that crosses a process boundary.

Field names are fixed by the v1 API (camelCase on the wire) so that existing consumers keep
working; new fields are only ever added with defaults. Byte counts follow one rule everywhere:
``downloadedBytes`` is what came over the network during this pull, ``cachedBytes`` is what was
already in the node's content store when the pull began, and ``percent`` counts both against
``totalBytes``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, TypeVar

import msgspec

SCHEMA_VERSION: Literal["v1"] = "v1"
REASON_MAX = 1024
"""Characters in a node's error: one sentence, not a log; senders truncate to fit."""
VERSION_MAX = 64

Phase = Literal["resolving", "pulling", "completed", "failed", "stale"]
EventType = Literal[
    "pull.started",
    "pull.progress",
    "pull.completed",
    "pull.failed",
    "layer.started",
    "layer.progress",
    "layer.completed",
    "pull.removed",
]
ACTIVE_PHASES: frozenset[str] = frozenset({"resolving", "pulling"})
NodeState = Literal["ready", "degraded", "stale", "unauthorized"]
NodeEventType = Literal["node.changed", "node.removed"]

NodeName = Annotated[str, msgspec.Meta(min_length=1, max_length=253)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
SocketPath = Annotated[str, msgspec.Meta(max_length=4096)]
Reason = Annotated[str, msgspec.Meta(max_length=REASON_MAX)]


class _Wire(msgspec.Struct, rename="camel", omit_defaults=False, forbid_unknown_fields=False):
    """Unknown fields are ignored so that a newer agent can talk to an older collector."""


class PodRef(_Wire):
    namespace: str
    pod_name: str
    container: str = ""


class LayerStatus(_Wire):
    digest: str
    media_type: str = ""
    total_bytes: NonNegInt = 0
    downloaded_bytes: NonNegInt = 0
    bytes_per_sec: NonNegFloat = 0.0
    percent: Percent = 0.0
    started_at: datetime | None = None
    completed_at: datetime | None = None
    cached: bool = False
    total_known: bool = False
    queued: bool = False
    """Waiting for one of containerd's download slots (2.x shares them across the node's
    pulls); ``startedAt`` is unset until its bytes begin to move."""


class PullStatus(_Wire):
    id: str
    node_name: NodeName
    image_ref: str = ""
    repository: str = ""
    manifest_digest: str = ""
    phase: Phase = "pulling"
    total_bytes: NonNegInt = 0
    downloaded_bytes: NonNegInt = 0
    cached_bytes: NonNegInt = 0
    bytes_per_sec: NonNegFloat = 0.0
    eta_seconds: NonNegFloat | None = None
    percent: Percent = 0.0
    layer_count: NonNegInt = 0
    layers_done: NonNegInt = 0
    layers_cached: NonNegInt = 0
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error: str = ""
    pods: list[PodRef] = msgspec.field(default_factory=list)
    layers: list[LayerStatus] = msgspec.field(default_factory=list)
    total_known: bool = False


class AgentReport(_Wire):
    node_name: NodeName
    timestamp: datetime
    pulls: list[PullStatus] = msgspec.field(default_factory=list)
    agent_version: str = ""
    interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    containerd_reachable: bool = True
    """Whether the agent's last poll reached containerd. The default keeps reports of agents
    older than this field valid: they said nothing, and their pulls moved."""
    containerd_socket: SocketPath = ""
    containerd_error: Reason = ""
    """Why containerd could not be read (without the socket path), when it could not."""


class NodeStatus(_Wire, kw_only=True):
    """What the collector knows of one node's agent: ``ready`` (reporting, containerd
    readable), ``degraded`` (reporting, containerd not readable: its pulls are frozen, not
    progressing), ``stale`` (silent for three report intervals) or ``unauthorized`` (its agent
    reports with a token the collector refuses). Nodes known only from kubelet have no agent,
    and no status."""

    node_name: NodeName
    state: NodeState
    containerd_reachable: bool = True
    containerd_socket: SocketPath = ""
    error: Reason = ""
    """Why the node is not ready, one sentence; empty when it is."""
    agent_version: Annotated[str, msgspec.Meta(max_length=VERSION_MAX)] = ""
    last_seen: datetime | None = None


class NodeList(_Wire, kw_only=True):
    """What ``GET /api/v1/nodes`` returns."""

    schema_version: Literal["v1"] = SCHEMA_VERSION
    nodes: list[NodeStatus]


class PullEvent(_Wire, kw_only=True):
    schema_version: Literal["v1"] = SCHEMA_VERSION
    timestamp: datetime
    type: EventType
    node_name: NodeName
    pull: PullStatus
    layer: LayerStatus | None = None


class PullList(_Wire, kw_only=True):
    """What ``pulltrace ls --json`` prints and ``GET /api/v1/pulls`` returns; the SSE stream's
    ``snapshot`` event is one too, with nodes added (``StreamSnapshot``)."""

    schema_version: Literal["v1"] = SCHEMA_VERSION
    pulls: list[PullStatus]


class StreamSnapshot(PullList, kw_only=True):
    """The SSE stream's ``snapshot`` event: a ``PullList`` (which older clients read it as)
    plus the nodes whose agents the collector has heard from. Nodes not in it are gone."""

    nodes: list[NodeStatus] | None = None
    """Always a list from a collector that tracks nodes; absent from older ones."""


SCHEMA_TYPES: dict[str, type[msgspec.Struct]] = {
    "agent-report": AgentReport,
    "pull-status": PullStatus,
    "pull-event": PullEvent,
    "pull-list": PullList,
    "stream-snapshot": StreamSnapshot,
    "node-status": NodeStatus,
    "node-list": NodeList,
}

_encoder = msgspec.json.Encoder()


def encode(obj: msgspec.Struct) -> bytes:
    return _encoder.encode(obj)


T = TypeVar("T")


def decode(data: bytes | str, kind: type[T]) -> T:
    return msgspec.json.decode(data, type=kind)
