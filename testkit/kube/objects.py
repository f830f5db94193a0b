"""Pod and Event objects shaped like the ones kubelet and the API server produce.

Field for field what ``kubectl get -o json`` shows for a pod whose image is being pulled, and
for the core/v1 Events kubelet POSTs while pulling (pkg/kubelet/images/image_manager.go), so
that the correlator is tested against the wire format it meets in a cluster.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
Obj = dict[str, Any]


def ts(at: datetime) -> str:
    """metav1.Time: RFC 3339, whole seconds."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def go_duration(seconds: float) -> str:
    """How Go's ``time.Duration.String`` prints the pull times in kubelet's messages."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:g}s"


def _hex(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def uid_for(*parts: object) -> str:
    h = _hex(*parts)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def sha(*parts: object) -> str:
    return "sha256:" + _hex(*parts)


# -- container states ------------------------------------------------------------------------


def waiting(reason: str, message: str = "") -> Obj:
    state: Obj = {"reason": reason}
    if message:
        state["message"] = message
    return {"waiting": state}


def running(started: datetime = T0) -> Obj:
    return {"running": {"startedAt": ts(started)}}


def terminated(finished: datetime = T0, reason: str = "Completed") -> Obj:
    return {
        "terminated": {
            "exitCode": 0,
            "reason": reason,
            "startedAt": ts(finished - timedelta(seconds=1)),
            "finishedAt": ts(finished),
            "containerID": "containerd://" + _hex("c", finished)[:64],
        }
    }


@dataclass
class C:
    """One container: its spec image, its state, and (once it ran) its imageID."""

    name: str
    image: str
    state: Obj = field(default_factory=lambda: waiting("ContainerCreating"))
    image_id: str = ""
    """``docker.io/library/nginx@sha256:…``: the repo digest, known once the image is pulled."""


# -- pods ------------------------------------------------------------------------------------


def pod(
    name: str,
    node: str,
    containers: Sequence[C],
    init: Sequence[C] = (),
    *,
    namespace: str = "default",
    phase: str | None = None,
    uid: str | None = None,
) -> Obj:
    started = all("running" in c.state for c in containers)
    phase = phase or ("Running" if started else "Pending")
    initialized = all("terminated" in c.state for c in init)
    conditions = [
        ("PodReadyToStartContainers", True),
        ("Initialized", initialized),
        ("Ready", started),
        ("ContainersReady", started),
        ("PodScheduled", True),
    ]
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or uid_for("pod", namespace, name),
            "creationTimestamp": ts(T0),
            "labels": {"app": name},
        },
        "spec": {
            "containers": [_container_spec(c) for c in containers],
            **({"initContainers": [_container_spec(c) for c in init]} if init else {}),
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "nodeName": node,
            "schedulerName": "default-scheduler",
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {
            "phase": phase,
            "conditions": [
                {
                    "type": kind,
                    "status": "True" if ok else "False",
                    "lastProbeTime": None,
                    "lastTransitionTime": ts(T0),
                    **({} if ok else {"reason": "ContainersNotReady"}),
                }
                for kind, ok in conditions
            ],
            "hostIP": "10.0.0.10",
            "hostIPs": [{"ip": "10.0.0.10"}],
            "podIP": "10.244.0.7",
            "podIPs": [{"ip": "10.244.0.7"}],
            "startTime": ts(T0),
            **(
                {"initContainerStatuses": [_container_status(c, True) for c in init]}
                if init
                else {}
            ),
            "containerStatuses": [_container_status(c, False) for c in containers],
            "qosClass": "BestEffort",
        },
    }


def _container_spec(c: C) -> Obj:
    return {
        "name": c.name,
        "image": c.image,
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "Always" if c.image.endswith(":latest") else "IfNotPresent",
    }


def _container_status(c: C, init: bool) -> Obj:
    ran = "waiting" not in c.state
    status: Obj = {
        "name": c.name,
        "state": c.state,
        "lastState": {},
        "ready": "running" in c.state and not init,
        "restartCount": 0,
        "image": _status_image(c),
        "imageID": c.image_id,
        "started": "running" in c.state,
    }
    if ran:
        status["containerID"] = "containerd://" + _hex("cid", c.name, c.image)[:64]
    return status


def _status_image(c: C) -> str:
    """Before the image is there kubelet echoes the spec; afterwards, the runtime's name."""
    if not c.image_id:
        return c.image
    last = c.image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last and "@" not in last else "latest"
    return f"{c.image_id.split('@')[0]}:{tag}"


def pending_pod(
    name: str,
    node: str,
    image: str,
    *,
    reason: str = "ContainerCreating",
    message: str = "",
    container: str = "app",
    namespace: str = "default",
) -> Obj:
    return pod(name, node, [C(container, image, waiting(reason, message))], namespace=namespace)


def running_pod(
    name: str,
    node: str,
    image: str,
    image_id: str,
    *,
    started: datetime = T0,
    container: str = "app",
    namespace: str = "default",
) -> Obj:
    return pod(name, node, [C(container, image, running(started), image_id)], namespace=namespace)


def initializing_pod(
    name: str,
    node: str,
    init_image: str,
    image: str,
    *,
    init_reason: str = "PodInitializing",
    namespace: str = "default",
) -> Obj:
    """An init container still waiting for its image; the app container waits behind it."""
    return pod(
        name,
        node,
        [C("app", image, waiting("PodInitializing"))],
        init=[C("init", init_image, waiting(init_reason))],
        namespace=namespace,
    )


# -- kubelet events --------------------------------------------------------------------------


def kubelet_event(
    p: Obj,
    reason: str,
    message: str,
    when: datetime,
    *,
    container: str = "app",
    warning: bool = False,
) -> Obj:
    meta, spec = p["metadata"], p["spec"]
    init = any(c["name"] == container for c in spec.get("initContainers", []))
    field_path = f"spec.{'initContainers' if init else 'containers'}{{{container}}}"
    node = spec["nodeName"]
    name = f"{meta['name']}.{_hex(meta['uid'], reason, message, container)[:16]}"
    return {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "uid": uid_for("event", name),
            "creationTimestamp": ts(when),
        },
        "involvedObject": {
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": "v1",
            "resourceVersion": "1",
            "fieldPath": field_path,
        },
        "reason": reason,
        "message": message,
        "source": {"component": "kubelet", "host": node},
        "firstTimestamp": ts(when),
        "lastTimestamp": ts(when),
        "count": 1,
        "type": "Warning" if warning else "Normal",
        "eventTime": None,
        "reportingComponent": "kubelet",
        "reportingInstance": node,
    }


def image_of(p: Obj, container: str) -> str:
    spec = p["spec"]
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        if c["name"] == container:
            return str(c["image"])
    raise KeyError(container)


def pulling(p: Obj, when: datetime, container: str = "app") -> Obj:
    image = image_of(p, container)
    return kubelet_event(p, "Pulling", f'Pulling image "{image}"', when, container=container)


def pulled(
    p: Obj,
    when: datetime,
    seconds: float = 3.2,
    waited: float | None = None,
    size: int = 70_000_000,
    container: str = "app",
) -> Obj:
    image = image_of(p, container)
    took, total = go_duration(seconds), go_duration(seconds if waited is None else waited)
    message = (
        f'Successfully pulled image "{image}" in {took} ({total} including waiting). '
        f"Image size: {size} bytes."
    )
    return kubelet_event(p, "Pulled", message, when, container=container)


def already_present(p: Obj, when: datetime, container: str = "app") -> Obj:
    image = image_of(p, container)
    message = f'Container image "{image}" already present on machine'
    return kubelet_event(p, "Pulled", message, when, container=container)


def failed(p: Obj, when: datetime, detail: str | None = None, container: str = "app") -> Obj:
    image = image_of(p, container)
    detail = detail or (
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
        f'failed to resolve reference "{image}": {image}: not found'
    )
    message = f'Failed to pull image "{image}": {detail}'
    return kubelet_event(p, "Failed", message, when, container=container, warning=True)


def err_image_pull(p: Obj, when: datetime, container: str = "app") -> Obj:
    return kubelet_event(
        p, "Failed", "Error: ErrImagePull", when, container=container, warning=True
    )


def backoff(p: Obj, when: datetime, container: str = "app") -> Obj:
    image = image_of(p, container)
    message = f'Back-off pulling image "{image}"'
    return kubelet_event(p, "BackOff", message, when, container=container)


def image_pull_backoff(p: Obj, when: datetime, container: str = "app") -> Obj:
    return kubelet_event(
        p, "Failed", "Error: ImagePullBackOff", when, container=container, warning=True
    )


def repeat(event: Obj, when: datetime) -> Obj:
    """What kubelet's event correlator sends when the same event happens again: the same
    object with ``count`` incremented and ``lastTimestamp`` moved."""
    again = copy.deepcopy(event)
    again["count"] = event["count"] + 1
    again["lastTimestamp"] = ts(when)
    return again
