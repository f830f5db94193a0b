"""``GET /api/v1/events``: one broker subscription per client, written out as it fills.

A raw ASGI endpoint, because the loop is simple and it has to notice a client that hangs up
while idle at once (a second task waits for ``http.disconnect``), so that its slot among the
allowed clients is free again without waiting for the next heartbeat.
"""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope, Send

from pulltrace.collector.asgi import header, send_error
from pulltrace.collector.broker import Broker, StreamUnavailable, Subscription

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/event-stream"),
        (b"cache-control", b"no-cache"),
        # Tell nginx-style proxies not to buffer the stream.
        (b"x-accel-buffering", b"no"),
    ],
}


class EventStream:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "HEAD":
            await send(_START)
            await send({"type": "http.response.body", "body": b""})
            return
        last_id = header(scope, b"last-event-id")
        try:
            sub = self._broker.subscribe(last_id.decode("latin-1") if last_id else None)
        except StreamUnavailable as err:
            await send_error(send, 503, str(err), [(b"retry-after", b"5")])
            return
        watcher = asyncio.ensure_future(_close_on_disconnect(receive, sub))
        try:
            await send(_START)
            while (data := await sub.next()) is not None:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except OSError:
            pass  # the client went away mid-write
        finally:
            self._broker.unsubscribe(sub)
            watcher.cancel()


async def _close_on_disconnect(receive: Receive, sub: Subscription) -> None:
    message: Message = {}
    while message.get("type") != "http.disconnect":
        message = await receive()
    sub.close()
