"""``GET /api/v1/events``: one broker subscription per client, written out as it fills.

A raw ASGI endpoint, because the loop is simple and it has to notice a client that hangs up
while idle at once (a second task waits for ``http.disconnect``), so that its slot among the
allowed clients is free again without waiting for the next heartbeat.

A client that sends ``Accept-Encoding: gzip`` (httpx does by default, and so ``pulltrace watch``)
gets the stream gzip-compressed: a tenth of the bytes, which is what lets one core feed 256
clients of a large cluster. The body is the gzip header and then the broker's deflate pieces.
"""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope, Send

from pulltrace.collector.asgi import header, send_error
from pulltrace.collector.broker import GZIP_HEADER, Broker, StreamUnavailable, Subscription

PATH = "/api/v1/events"
_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    # Tell nginx-style proxies not to buffer the stream.
    (b"x-accel-buffering", b"no"),
    (b"vary", b"accept-encoding"),
]
_PLAIN = {"type": "http.response.start", "status": 200, "headers": _HEADERS}
_GZIP = {
    "type": "http.response.start",
    "status": 200,
    "headers": [*_HEADERS, (b"content-encoding", b"gzip")],
}
_END = {"type": "http.response.body", "body": b""}


class EventStream:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            message = f"method {method} is not allowed on {PATH}; use GET"
            await send_error(send, 405, message, [(b"allow", b"GET, HEAD")])
            return
        gzip = accepts_gzip(header(scope, b"accept-encoding"))
        start = _GZIP if gzip else _PLAIN
        if method == "HEAD":
            await send(start)
            await send(_END)
            return
        last_id = header(scope, b"last-event-id")
        try:
            sub = self._broker.subscribe(last_id.decode("latin-1") if last_id else None, gzip=gzip)
        except StreamUnavailable as err:
            await send_error(send, 503, str(err), [(b"retry-after", b"5")])
            return
        watcher = asyncio.ensure_future(_close_on_disconnect(receive, sub))
        try:
            await send(start)
            if gzip:
                await send({"type": "http.response.body", "body": GZIP_HEADER, "more_body": True})
            while (data := await sub.next()) is not None:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send(_END)
        except OSError:
            pass  # the client went away mid-write
        finally:
            self._broker.unsubscribe(sub)
            watcher.cancel()


def accepts_gzip(value: bytes | None) -> bool:
    """By RFC 9110's rules, so that ``gzip;q=0`` (a refusal) and ``*`` (anything will do) are
    taken as the client meant them."""
    allowed: dict[bytes, bool] = {}
    for item in (value or b"").lower().split(b","):
        coding, *params = (part.strip() for part in item.split(b";"))
        q = next((p[2:] for p in params if p.startswith(b"q=")), b"1")
        allowed[coding] = _positive(q)
    return allowed.get(b"gzip", allowed.get(b"x-gzip", allowed.get(b"*", False)))


def _positive(q: bytes) -> bool:
    try:
        return float(q) > 0
    except ValueError:
        return False


async def _close_on_disconnect(receive: Receive, sub: Subscription) -> None:
    message: Message = {}
    while message.get("type") != "http.disconnect":
        message = await receive()
    sub.close()
