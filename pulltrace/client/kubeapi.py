"""A cluster without a collector: pulls as kubelet reports them (Pulling/Pulled/Failed/BackOff
events and waiting pods), phase-level only.

The watches are the collector's own (``KubeCorrelator``), so both agree on what a kubelet pull
is; here they run inside the CLI with the user's credentials. ``list_once`` lists pods and events
once through the same index as the live stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from pulltrace.client.kubeconfig import Cluster
from pulltrace.client.source import ConnectionState, Message, Snapshot
from pulltrace.errors import SourceError
from pulltrace.kube.api import KubeApiError, preflight

NOTICE = "API only: byte progress, speed and ETA need the pulltrace collector in the cluster"
SYNC_TIMEOUT = 30.0
DEBOUNCE = 0.5


class ListingError(SourceError):
    """Raised by ``ApiOnlySource.list_once`` when the pods and events are not listed in time;
    the API server's own refusals are ``KubeApiError``s."""


class ApiOnlySource:
    def __init__(self, cluster: Cluster, namespaces: Sequence[str] = ()) -> None:
        self.cluster = cluster
        self.namespaces = list(namespaces)

    @property
    def description(self) -> str:
        return "API only (no collector: phases, no bytes)"

    @property
    def context(self) -> str:
        return self.cluster.context

    def list_once(self) -> Snapshot:
        from pulltrace.kube.correlator import KubeCorrelator

        preflight(self.cluster.api_client, self.cluster.server, self.namespaces)
        correlator = KubeCorrelator(self.cluster.api_client, self.namespaces)
        correlator.start()
        try:
            if not correlator.wait_synced(SYNC_TIMEOUT):
                raise ListingError(f"could not list pods and events on {self.context} in time")
            return Snapshot(correlator.kubelet_pulls())
        finally:
            correlator.close()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Message]:
        from pulltrace.kube.correlator import KubeCorrelator

        try:
            await asyncio.to_thread(
                preflight, self.cluster.api_client, self.cluster.server, self.namespaces
            )
        except KubeApiError as err:
            yield ConnectionState("offline", str(err))
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        correlator = KubeCorrelator(self.cluster.api_client, self.namespaces)

        def notify() -> None:
            loop.call_soon_threadsafe(changed.set)

        correlator.set_listener(notify)
        correlator.start()
        try:
            yield ConnectionState("reconnecting", f"listing pods and events on {self.context}")
            while not await asyncio.to_thread(correlator.wait_synced, SYNC_TIMEOUT):
                # the watches keep retrying with backoff; LIVE only once they have listed
                yield ConnectionState("offline", f"cannot list pods and events on {self.context}")
            yield ConnectionState("live", NOTICE)
            while True:
                changed.clear()
                yield Snapshot(correlator.kubelet_pulls())
                await changed.wait()
                await asyncio.sleep(DEBOUNCE)  # a burst of watch events becomes one snapshot
        finally:
            await asyncio.to_thread(correlator.close)
