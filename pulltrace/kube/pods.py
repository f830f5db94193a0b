"""Pod and kubelet Event objects, as they come over the wire, reduced to what correlation uses.

Everything here works on the raw JSON dicts: the watch loops never build client models, which
would cost more than all the rest of the work and hide fields behind renamed attributes.
Malformed objects degrade to "nothing known" rather than raising, because one odd object must
not stop a watch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from pulltrace.kube.refs import ImageRef, try_parse
from pulltrace.model import PodRef

WAITING_REASONS = frozenset(
    {"ContainerCreating", "PodInitializing", "ErrImagePull", "ImagePullBackOff"}
)
"""A container in one of these has not started yet, so its image may still be on its way."""
PULL_FAILED_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff"})

ContainerState = Literal["waiting", "running", "terminated"]
ObsKind = Literal["pulling", "pulled", "present", "failed", "failed-generic", "backoff"]

_FIELD_PATH = re.compile(r"^spec\.(containers|initContainers)\{([^}]+)\}$")
_QUOTED_IMAGE = re.compile(r'image "([^"]+)"')
_PULLED_IN = re.compile(r'" in ([0-9.a-zµ]+)')
_GO_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_COMBINED = "(combined from similar events): "


class PodContainer(NamedTuple):
    """A hashable PodRef (msgspec structs are not), in PodRef's sort order."""

    namespace: str
    pod_name: str
    container: str

    def ref(self) -> PodRef:
        return PodRef(namespace=self.namespace, pod_name=self.pod_name, container=self.container)


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    image: str
    """As written in the pod spec."""
    ref: ImageRef | None
    """None when the spec's reference would not parse: such a container can never pull."""
    state: ContainerState
    reason: str
    message: str
    digest: str
    """The repo digest from ``imageID`` once the runtime knows it, else ""."""
    started_at: datetime | None

    @property
    def not_running(self) -> bool:
        return self.state == "waiting" and (not self.reason or self.reason in WAITING_REASONS)

    @property
    def pull_failed(self) -> bool:
        return self.state == "waiting" and self.reason in PULL_FAILED_REASONS


@dataclass(frozen=True, slots=True)
class Pod:
    uid: str
    namespace: str
    name: str
    node: str
    containers: tuple[Container, ...]

    def container(self, name: str) -> Container | None:
        return next((c for c in self.containers if c.name == name), None)

    def ref(self, container: str) -> PodContainer:
        return PodContainer(self.namespace, self.name, container)


@dataclass(frozen=True, slots=True)
class Observation:
    """One occurrence of a kubelet image event. An Event object whose ``count`` grew stands for
    several occurrences; we see its first and its latest."""

    at: datetime
    kind: ObsKind
    message: str
    pod: PodContainer
    pull_seconds: float | None = None
    """From ``Pulled``: how long the download took, to date a pull whose start we missed."""

    @property
    def rank(self) -> int:
        """Orders occurrences within one second (event timestamps have no finer resolution):
        a pull starts before it ends, and kubelet reports the generic error and the back-off
        after the detailed failure."""
        return _RANK[self.kind]


_RANK: dict[ObsKind, int] = {
    "pulling": 0,
    "pulled": 1,
    "present": 1,
    "failed": 1,
    "failed-generic": 2,
    "backoff": 3,
}


@dataclass(frozen=True, slots=True)
class KubeletEvent:
    node: str
    """``source.host``; "" when the event does not say (then the pod's node is used)."""
    pod_uid: str
    container: str
    image: str
    """From the message; "" for the generic ``Error: ErrImagePull`` kind."""
    observations: tuple[Observation, ...]


def parse_pod(obj: Mapping[str, Any]) -> Pod:
    meta = _dict(obj.get("metadata"))
    spec = _dict(obj.get("spec"))
    status = _dict(obj.get("status"))
    pending = status.get("phase") in (None, "", "Pending")
    containers: list[Container] = []
    for spec_key, status_key in (
        ("initContainers", "initContainerStatuses"),
        ("containers", "containerStatuses"),
    ):
        statuses = {str(s.get("name", "")): s for s in _dicts(status.get(status_key))}
        for c in _dicts(spec.get(spec_key)):
            name = str(c.get("name", ""))
            image = str(c.get("image") or "")
            containers.append(_container(name, image, statuses.get(name), pending))
    return Pod(
        uid=str(meta.get("uid") or ""),
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        node=str(spec.get("nodeName") or ""),
        containers=tuple(containers),
    )


def _container(name: str, image: str, status: Mapping[str, Any] | None, pending: bool) -> Container:
    state: ContainerState = "waiting"
    reason = message = ""
    started: datetime | None = None
    if status is None:
        # Kubelet has not reported yet: a pending pod's containers are not running; in any
        # other phase the missing status says nothing, so treat it as finished.
        state = "waiting" if pending else "terminated"
    else:
        st = _dict(status.get("state"))
        if "running" in st:
            state, started = "running", parse_time(_dict(st["running"]).get("startedAt"))
        elif "terminated" in st:
            state = "terminated"
        else:
            waiting = _dict(st.get("waiting"))
            reason = str(waiting.get("reason") or "")
            message = str(waiting.get("message") or "")
    digest = repo_digest(str((status or {}).get("imageID") or ""))
    return Container(name, image, try_parse(image), state, reason, message, digest, started)


def repo_digest(image_id: str) -> str:
    """``docker.io/library/nginx@sha256:…`` → ``sha256:…``. A bare ``sha256:…`` is the image's
    config digest, which no manifest is named by, so it gives nothing."""
    _, at, digest = image_id.rpartition("@")
    return digest if at else ""


def parse_event(obj: Mapping[str, Any]) -> KubeletEvent | None:
    """Kubelet's image events about a pod's container; None for every other event."""
    source = _dict(obj.get("source"))
    component = source.get("component") or obj.get("reportingComponent")
    involved = _dict(obj.get("involvedObject"))
    if component != "kubelet" or involved.get("kind") != "Pod":
        return None
    field = _FIELD_PATH.match(str(involved.get("fieldPath") or ""))
    if field is None:
        return None
    reason = str(obj.get("reason") or "")
    message = str(obj.get("message") or "").removeprefix(_COMBINED)
    classified = _classify(reason, message)
    if classified is None:
        return None
    kind, image = classified
    meta = _dict(obj.get("metadata"))
    pod = PodContainer(
        str(involved.get("namespace") or meta.get("namespace") or ""),
        str(involved.get("name") or ""),
        field.group(2),
    )
    pull = _pull_seconds(message) if kind == "pulled" else None
    latest = (
        parse_time(obj.get("lastTimestamp"))
        or parse_time(obj.get("eventTime"))
        or parse_time(obj.get("firstTimestamp"))
        or parse_time(meta.get("creationTimestamp"))
    )
    if latest is None:
        return None
    first = parse_time(obj.get("firstTimestamp")) or latest
    times = (first, latest) if first < latest else (latest,)
    return KubeletEvent(
        node=str(source.get("host") or obj.get("reportingInstance") or ""),
        pod_uid=str(involved.get("uid") or ""),
        container=field.group(2),
        image=image,
        observations=tuple(Observation(t, kind, message, pod, pull) for t in times),
    )


def _classify(reason: str, message: str) -> tuple[ObsKind, str] | None:
    quoted = _QUOTED_IMAGE.search(message)
    image = quoted.group(1) if quoted else ""
    if reason == "Pulling" and message.startswith("Pulling image"):
        return ("pulling", image) if image else None
    if reason == "Pulled":
        if message.startswith("Successfully pulled image") and image:
            return "pulled", image
        if message.startswith("Container image") and "already present" in message and image:
            return "present", image
        return None
    if reason in ("Failed", "ErrImagePull", "ErrImageNeverPull"):
        if image and message.startswith(("Failed to pull image", "Container image")):
            return "failed", image
        if message in ("Error: ErrImagePull", "Error: ErrImageNeverPull"):
            return "failed-generic", ""
        if message == "Error: ImagePullBackOff":
            return "backoff", ""
        return None
    if reason == "BackOff" and message.startswith("Back-off pulling image") and image:
        return "backoff", image
    return None


def _pull_seconds(message: str) -> float | None:
    m = _PULLED_IN.search(message)
    return go_duration(m.group(1)) if m else None


def go_duration(text: str) -> float | None:
    """Seconds in a Go ``time.Duration`` string such as ``1m2.5s`` or ``350ms``."""
    parts = _GO_DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _GO_UNITS[u] for n, u in parts)


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def seconds_before(at: datetime, seconds: float | None) -> datetime | None:
    return None if seconds is None else at - timedelta(seconds=seconds)


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _dicts(value: object) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []
