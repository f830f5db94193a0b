"""``POST /api/v1/report``, the hot path: thousands of agents, each every second or two.

It is a raw ASGI endpoint in front of Starlette's router: no Request object, no routing, the body
decoded by msgspec straight from bytes into the wire structs. Every check happens before the
store is touched, so a bad report never disturbs what is already held, and the merge itself is
synchronous, so its events are queued before the next request is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
from starlette.types import Receive, Scope, Send

from pulltrace.collector.asgi import (
    CHALLENGE,
    BearerToken,
    Headers,
    RefusedNodes,
    header,
    send_error,
)
from pulltrace.collector.metrics import Metrics, ReportResult
from pulltrace.model import AgentReport
from pulltrace.pullstore import InvalidReport, PullStore, StoreFull

PATH = "/api/v1/report"
_NO_CONTENT = {"type": "http.response.start", "status": 204, "headers": []}
_EMPTY = {"type": "http.response.body", "body": b""}


class NodeRateLimiter:
    """A token bucket per node: ``rate`` reports a second sustained, bursts of ``burst``, so an
    agent whose polls jitter is not punished while one that reports in a loop is."""

    def __init__(
        self, rate: float = 2.0, burst: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._prune_at = 1024

    def allow(self, node: str) -> bool:
        now = self._clock()
        tokens, last = self._buckets.get(node, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[node] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) >= self._prune_at:
            self._prune(now)
        return allowed

    def _prune(self, now: float) -> None:
        """Drop full buckets (the default for a node we have not seen), so nodes that went away
        cost nothing, and prune again only once the table has doubled."""
        refill = self.burst / self.rate
        self._buckets = {n: b for n, b in self._buckets.items() if now - b[1] < refill}
        self._prune_at = max(1024, 2 * len(self._buckets))


class _TooLarge(Exception):
    pass


class ReportEndpoint:
    def __init__(
        self,
        store: PullStore,
        *,
        token: str = "",
        max_bytes: int = 1 << 20,
        limiter: NodeRateLimiter | None = None,
        metrics: Metrics | None = None,
        refused: RefusedNodes | None = None,
    ) -> None:
        self._store = store
        self._refused = refused
        self._token = BearerToken(token) if token else None
        self._max_bytes = max_bytes
        self._limiter = limiter or NodeRateLimiter()
        self._metrics = metrics
        self._decoder = msgspec.json.Decoder(AgentReport)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            message = f"method {scope['method']} is not allowed on {PATH}; use POST"
            await send_error(send, 405, message, [(b"allow", b"POST")])
            return
        if self._token is not None:
            problem = self._token.problem(scope)
            if problem is not None:
                if self._refused is not None:
                    self._refused.record(scope, problem)
                await self._reject(send, "unauthorized", 401, problem, CHALLENGE)
                return
        try:
            body = await self._body(scope, receive)
        except _TooLarge:
            limit = _size(self._max_bytes)
            await self._reject(send, "too_large", 413, f"the report is larger than {limit}")
            return
        except ValueError as err:
            await self._reject(send, "invalid", 400, str(err))
            return
        if body is None:
            return  # the agent hung up
        try:
            report = self._decoder.decode(body)
        except msgspec.ValidationError as err:
            await self._reject(send, "invalid", 400, f"invalid report: {err}")
            return
        except msgspec.DecodeError as err:
            await self._reject(send, "invalid", 400, f"the request body is not valid JSON: {err}")
            return
        except RecursionError:
            # msgspec skips unknown fields, but still has to parse them: arrays nested a
            # thousand deep exhaust its recursion limit before any type says no.
            await self._reject(send, "invalid", 400, "the request body is nested too deeply")
            return
        if not self._limiter.allow(report.node_name):
            message = (
                f"node {report.node_name} reports more often than "
                f"{self._limiter.rate:g} times a second; slow down"
            )
            await self._reject(send, "rate_limited", 429, message, [(b"retry-after", b"1")])
            return
        try:
            self._store.apply_report(report)  # checks what the schema cannot say, first
        except InvalidReport as err:
            await self._reject(send, "invalid", 400, f"invalid report: {err}")
            return
        except StoreFull as err:
            await self._reject(send, "full", 429, str(err), [(b"retry-after", b"30")])
            return
        if self._metrics is not None:
            self._metrics.report("accepted")
        await send(_NO_CONTENT)
        await send(_EMPTY)

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        length = header(scope, b"content-length")
        if length is not None:
            if not length.isdigit():
                raise ValueError("the Content-Length header is not a number")
            if int(length) > self._max_bytes:
                raise _TooLarge
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self._max_bytes:
                raise _TooLarge
            parts.append(chunk)
            if not message.get("more_body", False):
                return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _reject(
        self,
        send: Send,
        result: ReportResult,
        status: int,
        message: str,
        headers: Headers = (),
    ) -> None:
        if self._metrics is not None:
            self._metrics.report(result)
        await send_error(send, status, message, headers)


def _size(n: int) -> str:
    if n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    return f"{n >> 10} KiB" if n % 1024 == 0 else f"{n} bytes"
