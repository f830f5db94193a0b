"""The collector's view of the cluster: pods waiting for images, and kubelet's own pulls.

``connect`` finds a configuration (``pulltrace.kube.config``) and starts the watches; the
collector then asks ``match`` and ``kubelet_pulls`` on every agent report. Those two only read
the index, so they are cheap enough for the event loop.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pulltrace.kube.config import load_api_client
from pulltrace.kube.index import DEFAULT_HISTORY_TTL, KubeIndex
from pulltrace.kube.pods import parse_event, parse_pod
from pulltrace.kube.watch import DEFAULT_BACKOFF, Backoff, ListWatch
from pulltrace.model import PodRef, PullStatus

KUBELET_EVENTS = "involvedObject.kind=Pod,source=kubelet"
"""Server-side filter: ``source`` is the Event's selectable ``source.component``."""


class KubeCorrelator:
    """Satisfies the collector's ``Correlator`` protocol."""

    def __init__(
        self,
        api_client: Any,
        namespaces: Sequence[str] = (),
        *,
        history_ttl: float = DEFAULT_HISTORY_TTL,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """``api_client`` is a configured ``kubernetes.client.ApiClient``; no namespaces means
        the whole cluster."""
        from kubernetes import client

        core = client.CoreV1Api(api_client)
        self._api_client = api_client
        self._index = KubeIndex(history_ttl, clock)
        self._listener: Callable[[], None] | None = None
        self._listener_lock = threading.Lock()
        self._loops: list[ListWatch[Any]] = []
        scopes: list[str | None] = [*namespaces] or [None]
        for ns in scopes:
            where = ns or "all namespaces"
            scope: tuple[str, ...] = (ns,) if ns else ()
            self._loops.append(
                ListWatch(
                    f"pods ({where})",
                    core.list_namespaced_pod if ns else core.list_pod_for_all_namespaces,
                    scope,
                    parse_pod,
                    functools.partial(self._index.replace_pods, ns),
                    self._index.apply_pod,
                    self._changed,
                    backoff=backoff,
                )
            )
            self._loops.append(
                ListWatch(
                    f"events ({where})",
                    core.list_namespaced_event if ns else core.list_event_for_all_namespaces,
                    scope,
                    parse_event,
                    self._index.replace_events,
                    self._index.apply_event,
                    self._changed,
                    field_selector=KUBELET_EVENTS,
                    backoff=backoff,
                )
            )

    @property
    def synced(self) -> bool:
        """Every initial list has been applied: until then, "no pods match" means nothing."""
        return all(loop.synced.is_set() for loop in self._loops)

    def match(self, node: str, repository: str, manifest_digest: str) -> tuple[list[PodRef], str]:
        return self._index.match(node, repository, manifest_digest)

    def kubelet_pulls(self) -> list[PullStatus]:
        return self._index.kubelet_pulls()

    def set_listener(self, fn: Callable[[], None]) -> None:
        """``fn`` runs in a watch thread; it should only schedule work on its own loop."""
        with self._listener_lock:
            self._listener = fn

    def start(self) -> None:
        for loop in self._loops:
            loop.start()

    def close(self) -> None:
        for loop in self._loops:
            loop.signal_stop()
        for loop in self._loops:
            loop.stop()
        self._api_client.close()

    def wait_synced(self, timeout: float) -> bool:
        """For callers that would rather not start matching on a half-listed cluster."""
        deadline = time.monotonic() + timeout
        return all(loop.synced.wait(max(0.0, deadline - time.monotonic())) for loop in self._loops)

    def _changed(self) -> None:
        with self._listener_lock:
            listener = self._listener
        if listener is not None:
            listener()


def connect(
    namespaces: list[str],
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    history_ttl: float = DEFAULT_HISTORY_TTL,
) -> KubeCorrelator | None:
    """A started correlator, or None when there is no configuration at all (the caller warns
    once and runs without correlation). Raises KubeConfigError for one that is broken."""
    api_client = load_api_client(kubeconfig, context)
    if api_client is None:
        return None
    correlator = KubeCorrelator(api_client, namespaces, history_ttl=history_ttl)
    correlator.start()
    return correlator
