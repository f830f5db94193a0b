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
NodeState = Literal["ready", "degraded", "stale"]
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
    progressing) or ``stale`` (silent for three report intervals). Nodes known only from
    kubelet have no agent, and no status."""

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


# -- history and image updates (issue 12) ---------------------------------------------------

HISTORY_PAGE_MAX = 1000
"""Pulls in one page of ``GET /api/v1/history``."""
IMAGE_MAX = 512
"""Characters in an image reference from a webhook: a registry host, a path and a tag."""
TAG_NAME_MAX = 63

StatsBy = Literal["image", "node", "repository"]
ImageText = Annotated[str, msgspec.Meta(max_length=IMAGE_MAX)]
ShortText = Annotated[str, msgspec.Meta(max_length=256)]
TagName = Annotated[str, msgspec.Meta(min_length=1, max_length=TAG_NAME_MAX)]


class FinishedPull(PullStatus, kw_only=True):
    """A completed or failed pull as the history keeps it: a ``PullStatus`` whose layers are
    summarised by ``layerCount``, ``layersDone`` and ``layersCached`` (the list itself is
    empty), plus what the collector measured over the whole pull."""

    duration_seconds: NonNegFloat = 0.0
    """From ``startedAt`` to ``completedAt``; 0 when either is unknown."""
    average_bytes_per_sec: NonNegFloat = 0.0
    """Downloaded bytes over the duration: cached bytes did not cross the network."""
    peak_bytes_per_sec: NonNegFloat = 0.0
    """The highest speed the collector showed for the pull (at least the average)."""


class HistoryList(_Wire, kw_only=True):
    """What ``GET /api/v1/history`` returns: newest finished first. ``continue`` is an opaque
    token for the next page, absent on the last one."""

    schema_version: Literal["v1"] = SCHEMA_VERSION
    pulls: list[FinishedPull]
    continue_: str | None = msgspec.field(default=None, name="continue")


class Quantiles(_Wire, kw_only=True):
    p50: NonNegFloat
    p95: NonNegFloat
    max: NonNegFloat


class StatsGroup(_Wire, kw_only=True):
    """One image, node or repository: its finished pulls since the window began. Quantiles are
    nearest-rank over the group's pulls, failed ones included (a failure's time was spent too)."""

    key: str
    count: NonNegInt
    failures: NonNegInt
    bytes: NonNegInt
    """Downloaded bytes, summed."""
    duration_seconds: Quantiles
    average_bytes_per_sec: Quantiles


class HistoryStats(_Wire, kw_only=True):
    """What ``GET /api/v1/history/stats`` returns, the largest groups first."""

    schema_version: Literal["v1"] = SCHEMA_VERSION
    by: StatsBy
    since: datetime | None = None
    groups: list[StatsGroup]


class Tag(_Wire, kw_only=True):
    id: NonNegInt
    name: TagName


class TagList(_Wire, kw_only=True):
    schema_version: Literal["v1"] = SCHEMA_VERSION
    tags: list[Tag]


class ImageUpdate(_Wire, kw_only=True):
    """A newer version of an image, as DIUN announced it; one per image, the latest notice."""

    image: ImageText
    digest: ShortText = ""
    status: ShortText = ""
    provider: ShortText = ""
    hub_link: ImageText = ""
    platform: ShortText = ""
    created: datetime | None = None
    received_at: datetime
    acknowledged: bool = False
    tag: Tag | None = None


class UpdateList(_Wire, kw_only=True):
    schema_version: Literal["v1"] = SCHEMA_VERSION
    updates: list[ImageUpdate]


class DiunNotification(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """DIUN's webhook body (its field names, snake_case, not ours). Only ``image`` is required;
    every string is bounded, and ``metadata`` is a flat map DIUN fills from the provider."""

    image: Annotated[str, msgspec.Meta(min_length=1, max_length=IMAGE_MAX)]
    diun_version: ShortText = ""
    hostname: ShortText = ""
    status: ShortText = ""
    provider: ShortText = ""
    hub_link: ImageText = ""
    mime_type: ShortText = ""
    digest: ShortText = ""
    created: datetime | None = None
    platform: ShortText = ""
    metadata: Annotated[dict[ShortText, ShortText], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=dict
    )


class TagRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/tags``."""

    name: TagName


class AcknowledgeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``PATCH /api/v1/updates/{image}``."""

    acknowledged: bool


class TagAssignment(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    """``PUT /api/v1/updates/{image}/tag``: null untags."""

    tag_id: Annotated[int, msgspec.Meta(ge=1, le=2**53)] | None


SCHEMA_TYPES.update(
    {
        "finished-pull": FinishedPull,
        "history-list": HistoryList,
        "history-stats": HistoryStats,
        "image-update": ImageUpdate,
        "update-list": UpdateList,
        "tag-list": TagList,
        "diun-notification": DiunNotification,
    }
)
