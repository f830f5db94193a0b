"""Kubelet's pull attempts for one image on one node, rebuilt from events and pod states.

Rebuilding from the whole set of observations, rather than updating a state machine event by
event, makes the result independent of the order events arrive in: a relist delivers old events
in arbitrary order, and the Pod and Event watches race each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pulltrace.kube.pods import Container, Observation, Pod, PodContainer, seconds_before
from pulltrace.kube.refs import ImageRef
from pulltrace.model import PullStatus

AttemptPhase = Literal["pulling", "completed", "failed"]


@dataclass(slots=True)
class Attempt:
    phase: AttemptPhase
    started_at: datetime | None
    completed_at: datetime | None = None
    error: str = ""
    generic_error: bool = False
    """The error is kubelet's ``Error: ErrImagePull`` (or a back-off), not the registry's."""
    pods: list[PodContainer] = field(default_factory=list)

    def add(self, pod: PodContainer) -> None:
        if pod not in self.pods:
            self.pods.append(pod)

    def finish(
        self, phase: AttemptPhase, at: datetime, error: str = "", generic: bool = False
    ) -> None:
        self.phase, self.completed_at, self.error, self.generic_error = phase, at, error, generic


def attempts(observations: Iterable[Observation]) -> list[Attempt]:
    """Kubelet emits Pulling, then Pulled or Failed (then BackOff) per pod; pods that want the
    same image on the same node while it downloads share that one download."""
    out: list[Attempt] = []
    for o in sorted(observations, key=_order):
        cur = out[-1] if out else None
        if cur is not None and cur.phase == "pulling":
            if o.kind == "present":
                cur.finish("completed", o.at)
                continue
            cur.add(o.pod)
            if o.kind == "pulled":
                cur.finish("completed", o.at)
            elif o.kind != "pulling":
                cur.finish("failed", o.at, o.message, generic=o.kind != "failed")
        elif o.kind == "pulling":
            out.append(Attempt("pulling", o.at, pods=[o.pod]))
        elif o.kind == "pulled":
            if cur is not None and cur.phase == "completed":
                cur.add(o.pod)  # it waited in kubelet's queue behind the same download
            else:
                start = seconds_before(o.at, o.pull_seconds)
                out.append(Attempt("completed", start, o.at, pods=[o.pod]))
        elif o.kind == "present":
            continue  # nothing was downloaded
        elif cur is not None and cur.phase == "failed":
            cur.add(o.pod)
            if o.kind == "failed" and cur.generic_error:
                cur.error, cur.generic_error = o.message, False
        else:
            generic = o.kind != "failed"
            out.append(Attempt("failed", None, o.at, o.message, generic, pods=[o.pod]))
    return out


def _order(o: Observation) -> tuple[datetime, int, PodContainer, str]:
    return (o.at, o.rank, o.pod, o.message)


@dataclass(frozen=True, slots=True)
class Row:
    status: PullStatus
    ended_at: datetime | None
    """When the pull finished, for the history TTL; None while it runs or while a pod still
    shows it failing."""


def kubelet_row(
    node: str,
    ref: ImageRef,
    observations: Iterable[Observation],
    users: Sequence[tuple[Pod, Container]],
) -> Row | None:
    """The latest pull of ``ref`` on ``node`` (a retry supersedes a failed attempt), or None
    when nothing says a pull happened. ``users`` are the containers on the node with that
    image; their states fill in what the events do not say."""
    history = attempts(observations)
    if history:
        latest = history[-1]
        if latest.phase == "pulling":
            _complete_from_pods(latest, users)
        ended = latest.completed_at
    else:
        failing = [(p, c) for p, c in users if c.pull_failed]
        if not failing:
            return None
        first = failing[0][1]
        error = first.message or first.reason
        latest = Attempt("failed", None, error=error, pods=[p.ref(c.name) for p, c in failing])
        ended = None
    digest = next((c.digest for _, c in users if c.digest and _ran_after(c, latest)), "")
    status = PullStatus(
        id=pull_id(node, str(ref), latest.started_at),
        node_name=node,
        image_ref=str(ref),
        repository=ref.repo_key,
        manifest_digest=digest,
        phase=latest.phase,
        started_at=latest.started_at,
        completed_at=latest.completed_at,
        error=latest.error if latest.phase == "failed" else "",
        pods=[p.ref() for p in sorted(latest.pods)],
        total_known=False,
    )
    return Row(status, ended)


def _complete_from_pods(attempt: Attempt, users: Sequence[tuple[Pod, Container]]) -> None:
    """A container that started with the image after the pull began proves the pull done,
    even when the Pulled event was missed; until then, pods still waiting belong to it."""
    started = [c.started_at for _, c in users if c.started_at and _ran_after(c, attempt)]
    if started:
        attempt.finish("completed", min(started))
        return
    for pod, container in users:
        if container.not_running:
            attempt.add(pod.ref(container.name))


def _ran_after(container: Container, attempt: Attempt) -> bool:
    if container.state != "running" or container.started_at is None:
        return False
    return attempt.started_at is None or container.started_at >= attempt.started_at


def pull_id(node: str, image_ref: str, started_at: datetime | None) -> str:
    start = started_at.isoformat() if started_at else ""
    return "k8s-" + hashlib.sha256(f"{node}|{image_ref}|{start}".encode()).hexdigest()[:16]
