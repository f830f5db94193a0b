"""A collector's live SSE stream (one-shot REST reads are in ``rest.py``).

The same code serves a collector reached directly and one reached through the Kubernetes API
server's service proxy; only the base URL and the credentials differ. The stream
never gives up: it resumes with ``Last-Event-ID`` so nothing is missed, and reports its state as
``ConnectionState`` messages instead of raising, because a watcher wants to see RECONNECTING,
not a traceback, when the collector restarts.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import httpx
import msgspec

from pulltrace import __version__
from pulltrace.client.rest import Endpoint, explain_status, unreachable, unreadable
from pulltrace.client.source import (
    ConnectionState,
    Event,
    LinkState,
    Message,
    NodeUpdate,
    Snapshot,
)
from pulltrace.model import NodeStatus, PullEvent, StreamSnapshot, decode

EVENTS_PATH = "/api/v1/events"
READ_TIMEOUT = 45.0  # three missed 15 s heartbeats: the connection is dead
MAX_BACKOFF = 10.0
OFFLINE_AFTER = 3  # failed attempts in a row before the header says OFFLINE


def async_client(endpoint: Endpoint, timeout: httpx.Timeout | float = 10.0) -> httpx.AsyncClient:
    headers = {"User-Agent": f"pulltrace/{__version__}", **endpoint.headers}
    verify = endpoint.ssl_context() if endpoint.base_url.startswith("https:") else True
    return httpx.AsyncClient(headers=headers, verify=verify, timeout=timeout)


def _explain(endpoint: Endpoint, err: Exception) -> str:
    if isinstance(err, httpx.HTTPStatusError):
        return explain_status(endpoint, err.response.status_code, err.response.content)
    if isinstance(err, httpx.TimeoutException):
        return unreachable(endpoint, TimeoutError())
    if isinstance(err, httpx.HTTPError):
        return unreachable(endpoint, err)
    if isinstance(err, msgspec.MsgspecError):
        return unreadable(endpoint, err)
    return str(err)


class CollectorSource:
    """The live stream of one collector as ``Source`` messages, reconnecting forever."""

    def __init__(
        self,
        endpoint: Endpoint,
        context: str = "",
        *,
        backoff: float = 0.5,
    ) -> None:
        self.endpoint = endpoint
        self._context = context
        self._first_backoff = backoff
        self.last_event_id = ""

    @property
    def description(self) -> str:
        return self.endpoint.description

    @property
    def context(self) -> str:
        return self._context

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Message]:
        from httpx_sse import SSEError, aconnect_sse

        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
        failures = 0
        backoff = self._first_backoff
        async with async_client(self.endpoint, timeout) as http:
            while True:
                headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
                try:
                    async with aconnect_sse(
                        http, "GET", self.endpoint.url(EVENTS_PATH), headers=headers
                    ) as stream:
                        if stream.response.is_error:
                            await stream.response.aread()  # its JSON error explains why
                        stream.response.raise_for_status()
                        failures, backoff = 0, self._first_backoff
                        yield ConnectionState("live", self.endpoint.base_url)
                        async for sse in stream.aiter_sse():
                            message = self._message(sse.event, sse.data)
                            if sse.id:
                                self.last_event_id = sse.id
                            if message is not None:
                                yield message
                    error = "the collector closed the stream"
                except (httpx.HTTPError, SSEError, msgspec.MsgspecError) as err:
                    error = _explain(self.endpoint, err)
                failures += 1
                state: LinkState = "offline" if failures >= OFFLINE_AFTER else "reconnecting"
                yield ConnectionState(state, error)
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(MAX_BACKOFF, backoff * 2)

    def _message(self, event: str, data: str) -> Message | None:
        if event == "snapshot":
            snapshot = decode(data, StreamSnapshot)
            return Snapshot(snapshot.pulls, snapshot.nodes)
        if event.startswith(("pull.", "layer.")):
            return Event(decode(data, PullEvent))
        if event in ("node.changed", "node.removed"):
            return NodeUpdate(decode(data, NodeStatus), removed=event == "node.removed")
        return None  # a newer collector's event type: ignore, as the v1 schema promises
