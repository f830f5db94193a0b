"""The collector's ASGI application: the report ingest and the event stream in front, Starlette's
router behind them.

The factory wires the store's events to the broker, the metrics and the lifecycle log, and its
lifespan runs the ticks: the store's (staleness, history expiry, coalesced progress), the
broker's fan-out and the heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import get_args

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from pulltrace.collector import history_api, ingest, stream
from pulltrace.collector.asgi import CHALLENGE, BearerToken, RefusedNodes, error_body, send_error
from pulltrace.collector.broker import Broker
from pulltrace.collector.config import CollectorConfig
from pulltrace.collector.eventlog import log_event, log_node
from pulltrace.collector.metrics import Metrics
from pulltrace.model import NodeList, Phase, PullList, PullStatus, encode
from pulltrace.pullstore import Correlator, PullStore

log = logging.getLogger("pulltrace.collector")

PROBES = frozenset({"/healthz", "/readyz"})
PHASES: tuple[str, ...] = get_args(Phase)
FILTERS = ("node", "namespace", "image", "phase")
PAGING = ("limit", "continue")


def create_app(
    config: CollectorConfig,
    store: PullStore,
    broker: Broker,
    correlator: Correlator | None = None,
    metrics: Metrics | None = None,
    *,
    limiter_clock: Callable[[], float] = time.monotonic,
    refused: RefusedNodes | None = None,
) -> ASGIApp:
    """``refused``, when given, has to be built on ``store.nodes``, and it is what the broker
    should list the nodes from."""
    refused = refused or RefusedNodes(store.nodes, time.time)
    store.add_listener(broker.publish)
    store.add_listener(log_event)
    for node_events in (store.add_node_listener, refused.add_listener):
        node_events(lambda change: broker.publish_node(change.kind, change.status))
        node_events(log_node)
    store.add_node_listener(refused.on_node)
    if metrics is not None:
        store.add_listener(metrics.on_event)
        metrics.observe(
            active_pulls=store.active_count,
            sse_clients=lambda: broker.client_count,
            agents=store.connected_agents,
            sse_resyncs=lambda: broker.resyncs,
            nodes=refused.nodes,
        )
    history = history_api.HistoryApi.open(config, store)
    limiter = ingest.NodeRateLimiter(rate=config.reports_per_second, clock=limiter_clock)
    report = ingest.ReportEndpoint(
        store,
        token=config.agent_token,
        max_bytes=config.max_report_bytes,
        limiter=limiter,
        metrics=metrics,
        refused=refused,
    )

    async def list_pulls(request: Request) -> Response:
        params = request.query_params
        unknown = sorted(set(params) - set(FILTERS) - set(PAGING))
        if unknown:
            known = ", ".join(FILTERS + PAGING)
            return _error(400, f"unknown query parameter {unknown[0]!r} (use {known})")
        limit_text = params.get("limit") or str(config.max_list)
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= config.max_list:
            return _error(400, f"limit must be a whole number from 1 to {config.max_list}")
        # An empty value is no filter, as with kubectl's flags.
        node, namespace, image, phase = (params.get(name) or None for name in FILTERS)
        if phase is not None and phase not in PHASES:
            return _error(400, f"phase must be one of {', '.join(PHASES)}, not {phase!r}")

        def keep(p: PullStatus) -> bool:
            return (
                (node is None or p.node_name == node)
                and (phase is None or p.phase == phase)
                and (namespace is None or any(pod.namespace == namespace for pod in p.pods))
                and (image is None or image in p.image_ref or image in p.repository)
            )

        try:
            page, more = store.page(params.get("continue") or "", int(limit_text), keep)
        except ValueError as err:
            return _error(400, f"{err}; start again without continue")
        pulls = [msgspec.structs.replace(p, layers=[]) if p.layers else p for p in page]
        return _json(encode(PullList(pulls=pulls, continue_=more or msgspec.UNSET)))

    async def get_pull(request: Request) -> Response:
        pull_id = request.path_params["id"]
        pull: PullStatus | None = store.get(pull_id)
        if pull is None:
            return _error(404, f"no pull with id {pull_id!r}")
        return _json(encode(pull))

    async def list_nodes(request: Request) -> Response:
        if request.query_params:
            return _error(400, "GET /api/v1/nodes takes no query parameters")
        return _json(encode(NodeList(nodes=refused.nodes())))

    async def healthz(request: Request) -> Response:
        return _json(b'{"status":"ok"}')

    async def readyz(request: Request) -> Response:
        if correlator is not None and not correlator.synced:
            return _error(503, "not ready: the Kubernetes watches have not synced yet")
        return _json(b'{"status":"ready"}')

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        tasks = [
            loop.create_task(_every(config.tick_interval, store.tick)),
            loop.create_task(_every(config.fanout_interval, broker.flush)),
            loop.create_task(_every(config.heartbeat_interval, broker.heartbeat)),
        ]
        history.start()
        try:
            yield
        finally:
            broker.close()
            await history.stop()
            for task in tasks:
                task.cancel()

    router = Starlette(
        routes=[
            Route("/api/v1/pulls", list_pulls, methods=["GET"]),
            Route("/api/v1/pulls/{id}", get_pull, methods=["GET"]),
            Route("/api/v1/nodes", list_nodes, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            *history.routes,
        ],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan,
    )
    return _Dispatch(router, report, stream.EventStream(broker), config.read_token)


class _Dispatch:
    """Sends reports straight to the ingest, checks the read token, and sends the event stream
    straight to its endpoint too: Starlette's middleware would wrap every write of every
    client's stream, thousands a second, in exception handling the endpoint does not need."""

    def __init__(
        self,
        router: ASGIApp,
        report: ingest.ReportEndpoint,
        events: stream.EventStream,
        read_token: str,
    ) -> None:
        self._router = router
        self._report = report
        self._events = events
        self._read_token = BearerToken(read_token) if read_token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == ingest.PATH:
                await self._report(scope, receive, send)
                return
            if (
                self._read_token is not None
                and path not in PROBES
                and path != history_api.WEBHOOK_PATH
            ):
                problem = self._read_token.problem(scope)
                if problem is not None:
                    await send_error(send, 401, problem, CHALLENGE)
                    return
            if path == stream.PATH:
                await self._events(scope, receive, send)
                return
        await self._router(scope, receive, send)


async def _every(interval: float, fn: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            fn()
        except Exception:
            # A bug in one tick must not stop the ticks; it is logged with its traceback.
            log.exception("periodic task failed", extra={"task": getattr(fn, "__name__", "")})


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        error_body(message), status_code=status, media_type="application/json", headers=headers
    )


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    method, path = request.method, request.url.path
    if exc.status_code == 404:
        message = f"no such endpoint: {method} {path}"
    elif exc.status_code == 405:
        message = f"method {method} is not allowed on {path}"
    else:
        message = exc.detail
    return _error(exc.status_code, message, exc.headers)


def _internal_error(request: Request, exc: Exception) -> Response:
    return _error(500, "internal error; the collector's log has the details")
