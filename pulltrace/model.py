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
INT64_MAX = 2**63 - 1
"""Every integer on the wire fits a signed 64-bit integer, which Go, Java and JavaScript's
BigInt consumers can all hold; larger ones are refused, not rounded."""
RATE_MAX = float(INT64_MAX)
"""Bytes a second: never more than a byte count. The collector clamps the rates it computes."""
ETA_MAX = 1e9
"""Seconds (some 31 years): a longer estimate is no estimate, and is sent as unknown."""
INTERVAL_MIN = 0.1
INTERVAL_MAX = 300.0
"""An agent's report interval, in seconds: the collector marks a node stale after three of
them, so an interval of 1e308 would keep its pulls ``pulling`` forever."""
LAYERS_MAX = 1000
"""Layers a pull may have. Docker and containerd's overlay snapshotter stop at 127 or 128
layers (the kernel's overlay mount options have to name every one of them), and a resolving
pull lists a handful of manifests and configs: 1000 leaves room for any real image while a
report cannot make the collector hold, and every client draw, an unbounded list."""
PULLS_MAX = 1000
"""Pulls one report may name: the agent reports what is in flight plus a minute of finished
pulls, and no node pulls a thousand images a minute."""
PODS_MAX = 1000
"""Pods waiting for one pull: a node runs at most a few hundred pods (kubelet's default
maximum is 110)."""
REF_MAX = 4096
"""Characters in an image reference or repository; a registry host and path are far shorter
(Docker's own limit on a repository name is 255), but a tag or digest comes on top."""
ERROR_MAX = 4096
"""Characters in a pull's error: kubelet's messages quote a registry's answer, which can be
long; senders truncate to fit."""
ID_MAX = 128
DIGEST_MAX = 256
MEDIA_TYPE_MAX = 255
"""RFC 6838: a type and a subtype of at most 127 characters each, and the slash."""

_PRINTABLE = r"^[!-~]*$"
"""Printable ASCII without spaces: what image references, repositories and media types are
made of. Nothing that could move a terminal's cursor or hide text gets in."""
_DNS_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"
_DNS_SUBDOMAIN = rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$"
"""RFC 1123, as Kubernetes names nodes and pods. Upper case is let through because an agent
outside Kubernetes defaults to the host name, which may have it; kubelet lower-cases its own."""
_DIGEST = r"^[a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$"
"""The OCI image spec's digest grammar: ``algorithm:encoded``."""
_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
"""Ids name a pull in a URL path (``/api/v1/pulls/{id}``): no slash, nothing to escape, and no
leading dot, which clients would normalise away as a path segment."""

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

NodeName = Annotated[str, msgspec.Meta(min_length=1, max_length=253, pattern=_DNS_SUBDOMAIN)]
PodName = Annotated[str, msgspec.Meta(max_length=253, pattern=r"^$|^" + _DNS_SUBDOMAIN[1:])]
Namespace = Annotated[str, msgspec.Meta(max_length=63, pattern=rf"^$|^{_DNS_LABEL}$")]
ContainerName = Namespace
PullId = Annotated[str, msgspec.Meta(max_length=ID_MAX, pattern=r"^$|^" + _ID[1:])]
"""Empty only where the collector assigns the id; a report's pulls must all have one."""
Digest = Annotated[str, msgspec.Meta(max_length=DIGEST_MAX, pattern=_DIGEST)]
OptionalDigest = Annotated[str, msgspec.Meta(max_length=DIGEST_MAX, pattern=r"^$|^" + _DIGEST[1:])]
ImageRef = Annotated[str, msgspec.Meta(max_length=REF_MAX, pattern=_PRINTABLE)]
MediaType = Annotated[str, msgspec.Meta(max_length=MEDIA_TYPE_MAX, pattern=_PRINTABLE)]
Bytes = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
Count = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
Rate = Annotated[float, msgspec.Meta(ge=0, le=RATE_MAX)]
Eta = Annotated[float, msgspec.Meta(ge=0, le=ETA_MAX)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Time = Annotated[datetime, msgspec.Meta(tz=True)]
"""With a zone: a naive time means a different instant on every machine that reads it, and
cannot be compared with an aware one."""
SocketPath = Annotated[str, msgspec.Meta(max_length=4096)]
Reason = Annotated[str, msgspec.Meta(max_length=REASON_MAX)]
PullError = Annotated[str, msgspec.Meta(max_length=ERROR_MAX)]
Version = Annotated[str, msgspec.Meta(max_length=VERSION_MAX)]
Interval = Annotated[float, msgspec.Meta(ge=INTERVAL_MIN, le=INTERVAL_MAX)]


class _Wire(msgspec.Struct, rename="camel", omit_defaults=False, forbid_unknown_fields=False):
    """Unknown fields are ignored so that a newer agent can talk to an older collector."""


class PodRef(_Wire):
    namespace: Namespace
    pod_name: PodName
    container: ContainerName = ""


class LayerStatus(_Wire):
    digest: Digest
    media_type: MediaType = ""
    total_bytes: Bytes = 0
    downloaded_bytes: Bytes = 0
    """At most ``totalBytes`` when ``totalKnown`` (the collector checks it)."""
    bytes_per_sec: Rate = 0.0
    percent: Percent = 0.0
    started_at: Time | None = None
    completed_at: Time | None = None
    cached: bool = False
    total_known: bool = False
    queued: bool = False
    """Waiting for one of containerd's download slots (2.x shares them across the node's
    pulls); ``startedAt`` is unset until its bytes begin to move."""


class PullStatus(_Wire):
    id: PullId
    node_name: NodeName
    image_ref: ImageRef = ""
    repository: ImageRef = ""
    manifest_digest: OptionalDigest = ""
    phase: Phase = "pulling"
    total_bytes: Bytes = 0
    downloaded_bytes: Bytes = 0
    """With ``cachedBytes``, at most ``totalBytes`` when ``totalKnown`` (the collector checks
    it)."""
    cached_bytes: Bytes = 0
    bytes_per_sec: Rate = 0.0
    eta_seconds: Eta | None = None
    percent: Percent = 0.0
    layer_count: Count = 0
    layers_done: Count = 0
    layers_cached: Count = 0
    started_at: Time | None = None
    completed_at: Time | None = None
    error: PullError = ""
    pods: Annotated[list[PodRef], msgspec.Meta(max_length=PODS_MAX)] = msgspec.field(
        default_factory=list
    )
    layers: Annotated[list[LayerStatus], msgspec.Meta(max_length=LAYERS_MAX)] = msgspec.field(
        default_factory=list
    )
    total_known: bool = False


class AgentReport(_Wire):
    node_name: NodeName
    timestamp: Time
    pulls: Annotated[list[PullStatus], msgspec.Meta(max_length=PULLS_MAX)] = msgspec.field(
        default_factory=list
    )
    agent_version: Annotated[str, msgspec.Meta(max_length=256)] = ""
    """Kept to its first 64 characters."""
    interval_seconds: Interval = 1.0
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
    agent_version: Version = ""
    last_seen: Time | None = None


class NodeList(_Wire, kw_only=True):
    """What ``GET /api/v1/nodes`` returns."""

    schema_version: Literal["v1"] = SCHEMA_VERSION
    nodes: list[NodeStatus]


class PullEvent(_Wire, kw_only=True):
    """One change of one pull. In ``layer.*`` events, and in ``pull.removed``, ``pull`` comes
    without its layers (``layers`` empty): the layer that changed is ``layer``, which replaces
    the held layer of its digest (``merge_layers``). Every other event carries the whole
    pull."""

    schema_version: Literal["v1"] = SCHEMA_VERSION
    timestamp: Time
    type: EventType
    node_name: NodeName
    pull: PullStatus
    layer: LayerStatus | None = None


class PullList(_Wire, kw_only=True):
    """What ``pulltrace ls --json`` prints and ``GET /api/v1/pulls`` returns; the SSE stream's
    ``snapshot`` event is one too, with nodes added (``StreamSnapshot``)."""

    schema_version: Literal["v1"] = SCHEMA_VERSION
    pulls: list[PullStatus]
    continue_: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] | msgspec.UnsetType = (
        msgspec.field(default=msgspec.UNSET, name="continue")
    )
    """Where the next page of ``GET /api/v1/pulls`` starts (its ``continue`` parameter), as
    the Kubernetes API pages lists; absent on the last page, and so from a snapshot and from
    ``ls`` output."""


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


def report_problem(report: AgentReport) -> str | None:
    """What the schema cannot say, checked after decoding: each pull named once, with an id,
    on the reporting node, each layer once, and no byte count past a known total. The path
    names the field. This runs for every report, so the common case is a few passes of set and
    generator work per pull; the message is only worked out for a report that fails."""
    node = report.node_name
    seen: set[str] = set()
    for i, pull in enumerate(report.pulls):
        layers = pull.layers
        if (
            not pull.id
            or pull.id in seen
            or pull.node_name != node
            or len({layer.digest for layer in layers}) != len(layers)
            or (pull.total_known and pull.downloaded_bytes + pull.cached_bytes > pull.total_bytes)
            or any(x.total_known and x.downloaded_bytes > x.total_bytes for x in layers)
        ):
            return _pull_problem(pull, f"$.pulls[{i}]", seen, node)
        seen.add(pull.id)
    return None


def _pull_problem(pull: PullStatus, where: str, seen: set[str], node: str) -> str:
    if not pull.id:
        return f"every pull needs a non-empty id - at `{where}.id`"
    if pull.id in seen:
        return f"pull {pull.id} appears twice - at `{where}.id`"
    if pull.node_name != node:
        return f"pull {pull.id} is on node {pull.node_name}, not on {node} - at `{where}.nodeName`"
    digests: set[str] = set()
    for j, layer in enumerate(pull.layers):
        if layer.digest in digests:
            return f"layer {layer.digest} appears twice - at `{where}.layers[{j}].digest`"
        digests.add(layer.digest)
    for j, layer in enumerate(pull.layers):
        if layer.total_known and layer.downloaded_bytes > layer.total_bytes:
            return (
                "downloadedBytes is more than a known totalBytes"
                f" - at `{where}.layers[{j}].downloadedBytes`"
            )
    return (
        "downloadedBytes plus cachedBytes is more than a known totalBytes"
        f" - at `{where}.downloadedBytes`"
    )


def merge_layers(held: list[LayerStatus], changed: list[LayerStatus]) -> list[LayerStatus]:
    """A pull's layers after events about some of them: each changed layer replaces the one
    with its digest, in place, or joins at the end. How a client applies a ``layer.*`` event
    whose pull comes without layers, and how the collector knows what a client then holds."""
    layers = list(held)
    where = {layer.digest: i for i, layer in enumerate(layers)}
    for layer in changed:
        i = where.get(layer.digest)
        if i is None:
            where[layer.digest] = len(layers)
            layers.append(layer)
        else:
            layers[i] = layer
    return layers


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

    duration_seconds: Rate = 0.0
    """From ``startedAt`` to ``completedAt``; 0 when either is unknown."""
    average_bytes_per_sec: Rate = 0.0
    """Downloaded bytes over the duration: cached bytes did not cross the network."""
    peak_bytes_per_sec: Rate = 0.0
    """The highest speed the collector showed for the pull (at least the average)."""


class HistoryList(_Wire, kw_only=True):
    """What ``GET /api/v1/history`` returns: newest finished first. ``continue`` is an opaque
    token for the next page, absent on the last one."""

    schema_version: Literal["v1"] = SCHEMA_VERSION
    pulls: list[FinishedPull]
    continue_: str | None = msgspec.field(default=None, name="continue")


class Quantiles(_Wire, kw_only=True):
    p50: Rate
    p95: Rate
    max: Rate


class StatsGroup(_Wire, kw_only=True):
    """One image, node or repository: its finished pulls since the window began. Quantiles are
    nearest-rank over the group's pulls, failed ones included (a failure's time was spent too)."""

    key: str
    count: Count
    failures: Count
    bytes: Bytes
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
    id: Count
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
