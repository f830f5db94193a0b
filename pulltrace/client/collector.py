"""A collector as a source: ``list_once`` reads its REST API, the stream follows its SSE events.

The same code serves a collector reached directly and one reached through the Kubernetes API
server's service proxy; only the ``Endpoint`` differs. The one-shot reads are synchronous
(``ls`` starts no event loop); the stream never gives up: it resumes with ``Last-Event-ID`` so
nothing is missed, and reports its state as ``ConnectionState`` messages instead of raising,
because a watcher wants to see RECONNECTING, not a traceback, when the collector restarts.

Everything the stream reads is bounded like the one-shot reads (``endpoint.py``): the answer's
headers must come within ``HEADERS_DEADLINE``, and each event (a heartbeat counts) within
``EVENT_DEADLINE`` of the one before, however slowly the bytes trickle; no event may exceed
``MAX_EVENT`` bytes (counted after httpx has decompressed the gzip the collector sends). A
stream that breaks a bound is dropped and reconnected, like a lost one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

import msgspec

from pulltrace.client.endpoint import (
    MAX_BODY,
    MAX_ERROR_BODY,
    Client,
    CollectorError,
    Endpoint,
    cause,
    explain_status,
    media_type,
    too_large,
    too_quiet,
    too_slow,
    unreachable,
    unreadable,
)
from pulltrace.client.source import (
    ConnectionState,
    Event,
    LinkState,
    Message,
    NodeUpdate,
    Snapshot,
)
from pulltrace.model import NodeList, NodeStatus, PullEvent, PullList, PullStatus, StreamSnapshot

if TYPE_CHECKING:
    import httpx

PULLS_PATH = "/api/v1/pulls"
NODES_PATH = "/api/v1/nodes"
EVENTS_PATH = "/api/v1/events"
HEADERS_DEADLINE = 10.0
"""Seconds from connecting until the stream's response headers are in."""
EVENT_DEADLINE = 45.0
"""Three missed 15 s heartbeats: the connection is dead, or trickles on purpose."""
MAX_EVENT = MAX_BODY
"""An event's bytes, its lines included: a snapshot is one ``data:`` line as large as a listing."""
MAX_BACKOFF = 10.0
MAX_PAGES = 64
"""Pages of ``GET /api/v1/pulls`` one listing follows: the collector's 20 000-pull cap is four
pages of 5 000, so more means a peer that never ends its list."""
OFFLINE_AFTER = 3  # failed attempts in a row before the header says OFFLINE


class CollectorSource:
    """One collector: its listing once, or its live stream as ``Source`` messages."""

    def __init__(
        self,
        endpoint: Endpoint,
        context: str = "",
        *,
        node: str = "",
        namespaces: Sequence[str] = (),
        backoff: float = 0.5,
        event_deadline: float = EVENT_DEADLINE,
    ) -> None:
        self.endpoint = endpoint
        self._context = context
        self._params = {"node": node} if node else {}
        if len(namespaces) == 1:
            self._params["namespace"] = namespaces[0]
        self._first_backoff = backoff
        self._event_deadline = event_deadline
        self.last_event_id = ""

    @property
    def description(self) -> str:
        return self.endpoint.description

    @property
    def context(self) -> str:
        return self._context

    def list_once(self) -> Snapshot:
        """``GET /api/v1/pulls`` (filtered on the server by node and a single namespace), then
        ``/api/v1/nodes``. Raises CollectorError (one line) when the pulls cannot be read; a
        collector older than node health (404) gives ``nodes`` None, and one whose nodes fail
        says why in ``nodes_error``."""
        client = Client(self.endpoint)
        pulls = self._all_pages(client)
        try:
            reply = client.get(NODES_PATH)
            if reply.status == 404:
                return Snapshot(pulls)
            return Snapshot(pulls, client.json(reply, NodeList).nodes)
        except CollectorError as err:
            return Snapshot(pulls, nodes_error=str(err))

    def _all_pages(self, client: Client) -> list[PullStatus]:
        """Every page of the listing, as kubectl follows ``continue``: a collector holding
        more pulls than one page would otherwise show only the first ones."""
        params = dict(self._params)
        listing = client.get_json(PULLS_PATH, PullList, params)
        pulls = list(listing.pulls)
        for _ in range(MAX_PAGES):
            if listing.continue_ is msgspec.UNSET:
                return pulls
            params["continue"] = listing.continue_
            listing = client.get_json(PULLS_PATH, PullList, params)
            pulls += listing.pulls
        raise CollectorError(unreadable(self.endpoint, f"more than {MAX_PAGES} pages of pulls"))

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Message]:
        import asyncio
        import random

        import httpx

        failures = 0
        backoff = self._first_backoff
        headers = {"User-Agent": self.endpoint.request_headers("")["User-Agent"]}
        async with httpx.AsyncClient(
            headers={**headers, **self.endpoint.headers},
            verify=self.endpoint.verify_arg(),
            timeout=httpx.Timeout(HEADERS_DEADLINE, read=self._event_deadline),
            trust_env=False,
        ) as http:
            while True:
                try:
                    response = await self._connect(http)
                except CollectorError as err:
                    error = str(err)
                else:
                    try:
                        failures, backoff = 0, self._first_backoff
                        yield ConnectionState("live", self.endpoint.base_url)
                        async for message in self._read(response):
                            yield message
                        error = "the collector closed the stream"
                    except CollectorError as err:
                        error = str(err)
                    finally:
                        await response.aclose()
                failures += 1
                state: LinkState = "offline" if failures >= OFFLINE_AFTER else "reconnecting"
                yield ConnectionState(state, error)
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(MAX_BACKOFF, backoff * 2)

    async def _connect(self, http: httpx.AsyncClient) -> httpx.Response:
        """The stream's response once its headers are in and say it is an event stream."""
        import asyncio

        import httpx

        endpoint = self.endpoint
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        request = http.build_request("GET", endpoint.url(EVENTS_PATH), headers=headers)
        try:
            async with asyncio.timeout(HEADERS_DEADLINE):
                response = await http.send(request, stream=True)
                try:
                    if response.is_error:
                        body = await _read_some(response, MAX_ERROR_BODY)
                        status, kind = response.status_code, response.headers.get("content-type")
                        raise CollectorError(explain_status(endpoint, status, kind or "", body))
                    kind = media_type(response.headers.get("content-type", ""))
                    if kind != "text/event-stream":
                        from pulltrace.render import printable

                        what = printable(kind or "no content type", 80)
                        raise CollectorError(unreadable(endpoint, f"{what}, not an event stream"))
                except BaseException:
                    await response.aclose()
                    raise
                return response
        except TimeoutError:
            raise CollectorError(too_slow(endpoint, HEADERS_DEADLINE)) from None
        except (httpx.HTTPError, httpx.StreamError, OSError) as err:
            raise CollectorError(_failure(endpoint, err, HEADERS_DEADLINE)) from None

    async def _read(self, response: httpx.Response) -> AsyncIterator[Message]:
        """The stream's messages; CollectorError when it breaks a bound or sends garbage. The
        deadline wraps each read, never a ``yield``, so a slow consumer is not timed out."""
        import asyncio

        import httpx

        loop = asyncio.get_running_loop()
        endpoint = self.endpoint
        parser = EventParser(MAX_EVENT)
        chunks = response.aiter_bytes()
        due = loop.time() + self._event_deadline
        try:
            while True:
                try:
                    async with asyncio.timeout_at(due):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                blocks = parser.blocks
                events = parser.feed(chunk)
                if parser.blocks != blocks:
                    due = loop.time() + self._event_deadline
                for sse in events:
                    message = self._message(sse.event, sse.data)
                    if sse.id:
                        self.last_event_id = sse.id
                    if message is not None:
                        yield message
        except TimeoutError:
            raise CollectorError(too_quiet(endpoint, self._event_deadline)) from None
        except _EventTooLarge:
            raise CollectorError(too_large(endpoint, MAX_EVENT)) from None
        except (msgspec.MsgspecError, RecursionError) as err:
            from pulltrace.render import printable

            raise CollectorError(unreadable(endpoint, printable(str(err), 200))) from None
        except (httpx.HTTPError, httpx.StreamError, OSError) as err:
            # httpx's own read timeout is the event deadline too: no byte in all that time
            raise CollectorError(_failure(endpoint, err, self._event_deadline)) from None
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    def _message(self, event: str, data: bytes | bytearray) -> Message | None:
        if event == "snapshot":
            snapshot = msgspec.json.decode(data, type=StreamSnapshot)
            return Snapshot(snapshot.pulls, snapshot.nodes)
        if event.startswith(("pull.", "layer.")):
            return Event(msgspec.json.decode(data, type=PullEvent))
        if event in ("node.changed", "node.removed"):
            node = msgspec.json.decode(data, type=NodeStatus)
            return NodeUpdate(node, removed=event == "node.removed")
        return None  # a newer collector's event type: ignore, as the v1 schema promises


def _failure(endpoint: Endpoint, err: Exception, seconds: float) -> str:
    """One line for what httpx raised: too slow (``seconds`` was the deadline), not HTTP, or
    not reached at all."""
    import httpx

    if isinstance(err, httpx.TimeoutException):
        return too_slow(endpoint, seconds)
    if isinstance(err, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return f"not an http(s) URL: {endpoint.base_url!r}"
    if isinstance(err, httpx.RemoteProtocolError | httpx.DecodingError):
        return unreadable(endpoint, cause(err))
    return unreachable(endpoint, cause(err))


async def _read_some(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of an error answer: enough for its one sentence."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= limit:
            break
    return bytes(body[:limit])


class _EventTooLarge(Exception):
    """An event (or one line of it) grew past the parser's limit: private control flow."""


class ServerSentEvent(NamedTuple):
    event: str
    data: bytearray
    id: str


class EventParser:
    """The ``text/event-stream`` format (WHATWG HTML, "event stream interpretation") fed in
    chunks, in memory bounded by ``limit`` bytes per event. httpx-sse reads the same format
    but holds a line or an event of any length, which is how an endless line grew a client
    past 1.5 GB; this is its bounded counterpart, which also copies a line's bytes only once
    (a snapshot is one line as large as a listing). Lines end in LF or CRLF (what collectors
    and the API server's proxy send); ``data`` stays bytes for the JSON decoder."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.blocks = 0
        """Blank lines seen: events, and the heartbeats that carry none."""
        self._buffer = bytearray()
        self._scanned = 0
        self._event = ""
        self._data = bytearray()
        self._has_data = False
        self._size = 0
        self._id = ""

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        buffer = self._buffer
        buffer += chunk
        events = []
        start = 0
        while (end := buffer.find(b"\n", self._scanned)) >= 0:
            stop = end - 1 if end > start and buffer[end - 1] == 0x0D else end
            event = self._line(start, stop)
            start = self._scanned = end + 1
            if event is not None:
                events.append(event)
        del buffer[:start]
        self._scanned = len(buffer)
        if self._size + len(buffer) > self.limit:
            raise _EventTooLarge
        return events

    def _line(self, start: int, stop: int) -> ServerSentEvent | None:
        """The line ``self._buffer[start:stop]``, read in place."""
        buffer = self._buffer
        if start == stop:
            self.blocks += 1
            event = None
            if self._has_data or self._event:
                event = ServerSentEvent(self._event or "message", self._data, self._id)
            self._event, self._data, self._has_data, self._size = "", bytearray(), False, 0
            return event
        self._size += stop - start + 1
        if self._size > self.limit:
            raise _EventTooLarge
        colon = buffer.find(b":", start, stop)
        name_end = stop if colon < 0 else colon
        if name_end - start > len(b"event"):
            return None  # a comment (empty name) or a field this parser does not know
        value = stop if colon < 0 else colon + 1
        if value < stop and buffer[value] == 0x20:
            value += 1
        name = bytes(buffer[start:name_end])
        if name == b"data":
            if self._has_data:
                self._data += b"\n"
            with memoryview(buffer) as view:
                self._data += view[value:stop]
            self._has_data = True
        elif name == b"event":
            self._event = buffer[value:stop].decode("utf-8", "replace")
        elif name == b"id" and buffer.find(b"\0", value, stop) < 0:
            self._id = buffer[value:stop].decode("utf-8", "replace")
        return None
