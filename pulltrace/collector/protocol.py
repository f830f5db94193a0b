"""The collector's HTTP limits: uvicorn's settings where it has them, and the few it lacks.

uvicorn bounds the idle time between requests (``timeout_keep_alive``) and the requests
served at once (``limit_concurrency``, answered with 503). It has no setting for how long a
request may take to arrive (uvicorn issue #157 asked for ``--timeout-request-start`` and
``--timeout-request-complete``), none that caps open connections (``limit_concurrency``
answers a request only once its headers have arrived, so idle connections still hold their
file descriptors), and it goes on reading a body the application has already refused.

Its header size limit, ``h11_max_incomplete_event_size``, exists for h11 only, and h11 costs
the report endpoint three times the CPU of httptools (``bench/http_protocol.py``: 170 against
58 µs of collector CPU per report; at 5 000 nodes that difference is a quarter of the
collector's one-core budget). So the collector keeps
httptools, and ``BoundedHttpTools`` counts the request head's bytes itself. It follows the
parser's callbacks:

- while the parser waits for a request line and headers, on a connection that is neither
  answering a request nor waiting out its keep-alive, the peer owes them within
  ``header_timeout``; the time starts when the
  connection opens, or with the first byte of the next request on a kept-alive one; more
  than ``max_header_bytes`` of them is a 431 and the end of the connection;
- from the end of the headers to the end of the body the peer owes the body, within
  ``body_timeout``;
- once the request is read nothing runs: a long event stream is the application's business;
- beyond ``max_connections`` a new connection is closed before anything is read from it;
- a response that refuses a body it has not read ends the connection (``RefusedBody``).

The values live in ``HttpLimits``, so that tests can shorten them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("pulltrace.collector")

KiB = 1024


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Every bound the HTTP layer puts on a peer. The body size is the report endpoint's
    (``CollectorConfig.max_report_bytes``): the only endpoint that reads a body."""

    max_header_bytes: int = 64 * KiB
    """Request line and headers together; the agent sends under 300 bytes."""
    header_timeout: float = 10.0
    """From the connection's start, or a kept-alive request's first byte, to its last header
    byte: kubelet's liveness probe gives up after 1 s, an agent after 5 s."""
    body_timeout: float = 30.0
    """From the last header byte to the last body byte: a full 1 MiB report at 35 KB/s."""
    linger_timeout: float = 2.0
    """After a response that refused the body: time for the peer to finish writing and read
    the response, while the rest of its body is discarded."""
    keep_alive_timeout: int = 15
    """Idle time allowed between requests: above an agent's two-second heartbeat, so its
    connection is reused, below the header timeout's worth of an idle attacker."""
    max_connections: int = 8192
    """Open connections: 5 000 agents (the Kubernetes node limit), 256 event streams and room
    for probes, scrapes and reconnects."""


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits uvicorn has no setting for (see the
    module)."""

    limits: ClassVar[HttpLimits] = HttpLimits()
    _refusing: ClassVar[list[bool]] = [False]
    """Whether the cap was reached: logged once each time, not once a connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._phase = ""
        self._in_head = True
        """The parser waits for a request line and headers."""
        self._in_body = False
        self._head_bytes = 0
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            if not self._refusing[0]:
                self._refusing[0] = True
                log.warning(
                    "connection limit reached: closing new connections unread",
                    extra={"maxConnections": self.limits.max_connections},
                )
            transport.close()
            return
        if self._refusing[0] and len(self.connections) < self.limits.max_connections:
            self._refusing[0] = False
            log.info("connections below the limit again")
        self._watch()

    def data_received(self, data: bytes) -> None:
        """Feeds the parser at most one byte past the head limit while it waits for a head,
        so that a head that arrives whole in one read (up to 256 KiB) is bounded too, and
        nothing past the limit is ever buffered."""
        while data and not self.transport.is_closing():
            if self._in_head:
                room = self.limits.max_header_bytes + 1 - self._head_bytes
                piece, data = data[:room], data[room:]
                self._head_bytes += len(piece)
            else:
                piece, data = data, b""
            super().data_received(piece)
            over = self._head_bytes > self.limits.max_header_bytes
            if over and self._in_head and not self.transport.is_closing():
                self._head_too_large()
        self._watch()

    def on_headers_complete(self) -> None:
        self._in_head, self._in_body, self._head_bytes = False, True, 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._in_body = True, False
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _head_too_large(self) -> None:
        body = b'{"error":"the request line and headers are larger than %d KiB"}' % (
            self.limits.max_header_bytes // KiB
        )
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()

    def _watch(self) -> None:
        phase = self._owed()
        if phase == self._phase:
            return
        self._disarm()
        self._phase = phase
        if phase == "headers":
            self._deadline = self.loop.call_later(self.limits.header_timeout, self._expired)
        elif phase == "body":
            self._deadline = self.loop.call_later(self.limits.body_timeout, self._expired)

    def _owed(self) -> str:
        """What the peer owes now: ``headers``, ``body``, or nothing."""
        if self.transport.is_closing():
            return ""
        if self._in_body:
            return "body"
        answering = self.cycle is not None and not self.cycle.response_complete
        if answering or self.timeout_keep_alive_task is not None:
            return ""
        return "headers"

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        log.debug(
            f"closing a connection whose request {self._phase} came too slowly",
            extra={"client": _client(self.client)},
        )
        self._phase = ""
        self.transport.close()


def protocol_class(limits: HttpLimits) -> type[BoundedHttpTools]:
    """A protocol class per server, each with its own limits and its own log-once state."""
    return type("BoundedHttpTools", (BoundedHttpTools,), {"limits": limits, "_refusing": [False]})


def _client(address: Any) -> str:
    return f"{address[0]}:{address[1]}" if address else ""


class RefusedBody:
    """Ends a connection whose request body the application answered without reading to the
    end (a 413, a 401), instead of reading the rest as uvicorn would: no next request can
    start before the body ends, and reading it is what the refusal meant to avoid.

    The response says ``Connection: close``, so the client does not reuse the connection, and
    then waits up to ``linger`` seconds, discarding what the client still sends, before it
    completes, so that uvicorn closes it: closing while the client is still writing would
    reset the connection, and a reset throws away the response the client has not read yet,
    so an agent would see a broken connection rather than the 413 that says why (nginx's
    lingering close does the same).

    Only requests that carry a body are wrapped: the event streams, which write thousands of
    times a second, are GETs without one."""

    def __init__(self, app: ASGIApp, linger: float) -> None:
        self._app = app
        self._linger = linger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope["headers"]):
            await self._app(scope, receive, send)
            return
        unread = True

        async def receive_tracked() -> Message:
            nonlocal unread
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                unread = False
            return message

        async def send_refusing(message: Message) -> None:
            if not unread:
                await send(message)
            elif message["type"] == "http.response.start":
                await send({**message, "headers": [*message.get("headers", ()), CLOSE]})
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                await send({**message, "more_body": True})
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._linger):
                        while unread:
                            await receive_tracked()
                await send({"type": "http.response.body", "body": b""})
            else:
                await send(message)

        await self._app(scope, receive_tracked, send_refusing)


CLOSE = (b"connection", b"close")


def _has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False
