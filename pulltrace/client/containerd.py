"""``--containerd``: one node's containerd, with no cluster and no collector.

The tracker is synchronous (grpcio), so the stream runs each poll in a worker thread; every
poll is a full picture of the node, so it is sent as a snapshot. ``list_once`` polls twice,
``interval`` apart, so that speeds and ETAs are measured, not guessed.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

from pulltrace.agent.containerd import ContainerdError, ContentClient
from pulltrace.agent.tracker import Tracker
from pulltrace.client.source import ConnectionState, Message, Snapshot


class ContainerdSource:
    def __init__(self, address: str, namespace: str = "k8s.io", interval: float = 1.0) -> None:
        self.address = address
        self.namespace = namespace
        self.interval = interval

    @property
    def description(self) -> str:
        return f"containerd {self.address}"

    @property
    def context(self) -> str:
        return socket.gethostname()

    def list_once(self) -> Snapshot:
        """Raises ContainerdError (one line) when the socket cannot be used."""
        with ContentClient(self.address, self.namespace) as client:
            client.check()
            tracker = Tracker(client, socket.gethostname())
            tracker.poll()
            time.sleep(self.interval)
            return Snapshot(tracker.poll())

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Message]:
        with ContentClient(self.address, self.namespace) as client:
            tracker = Tracker(client, socket.gethostname())
            healthy: bool | None = None
            while True:
                try:
                    pulls = await asyncio.to_thread(tracker.poll)
                except ContainerdError as err:
                    if healthy is not False:
                        yield ConnectionState("offline", str(err))
                    healthy = False
                else:
                    if healthy is not True:
                        yield ConnectionState("live", self.address)
                    healthy = True
                    yield Snapshot(pulls)
                await asyncio.sleep(self.interval)
