"""What the collector needs from Kubernetes, as a Protocol so that the store can be used and
tested without a cluster; ``pulltrace.kube`` implements it structurally."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pulltrace.model import PodRef, PullStatus


class Correlator(Protocol):
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
