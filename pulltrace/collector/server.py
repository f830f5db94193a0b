"""The collector process: the API and the metrics servers, two uvicorn servers on one event loop.

The sockets are bound before anything starts, so a port in use is one clear error, and tests can
listen on port 0 and read the port back. SIGTERM ends the event streams first and then lets
uvicorn finish the requests in flight: otherwise its graceful shutdown would wait on streams
that never end.

The HTTP limits (header size and time, body time, keep-alive, connections) are in
``pulltrace.collector.protocol``; the report body's size is the ingest's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

from pulltrace import __version__
from pulltrace.collector.app import create_app
from pulltrace.collector.asgi import RefusedNodes
from pulltrace.collector.broker import Broker
from pulltrace.collector.config import CollectorConfig
from pulltrace.collector.metrics import Metrics
from pulltrace.collector.protocol import HttpLimits, RefusedBody, protocol_class
from pulltrace.listen import ConfigError, format_address, listen_socket
from pulltrace.pullstore import Correlator, PullStore

log = logging.getLogger("pulltrace.collector")

GRACEFUL_SHUTDOWN = 5
"""Seconds for requests in flight once the streams are closed; well inside Kubernetes' 30."""
METRICS_LIMITS = HttpLimits(max_connections=64)
"""Prometheus scrapes one connection at a time per server; a few more for curl."""
FD_RESERVE = 256
"""File descriptors kept out of the connection cap: logs, Kubernetes watches, the metrics
server's connections and the listening sockets."""


class _Server(uvicorn.Server):
    """The service handles signals itself, for both servers at once."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Service:
    def __init__(
        self,
        config: CollectorConfig,
        correlator: Correlator | None = None,
        *,
        clock: Callable[[], float] = time.time,
        limiter_clock: Callable[[], float] = time.monotonic,
        limits: HttpLimits | None = None,
    ) -> None:
        self.config = config
        self.limits = limits or process_limits()
        self.store = PullStore(
            config.history_ttl,
            correlator,
            clock=clock,
            progress_interval=config.progress_interval,
            stale_check_interval=config.stale_check_interval,
            max_pulls=config.max_pulls,
            max_nodes=config.max_nodes,
        )
        self.refused = RefusedNodes(self.store.nodes, clock)
        self.broker = Broker(
            self.store.snapshot,
            nodes=self.refused.nodes,
            max_clients=config.max_sse_clients,
            ring_size=config.ring_size,
            queue_bytes=config.client_queue_bytes,
        )
        self.metrics = Metrics()
        app = create_app(
            config,
            self.store,
            self.broker,
            correlator,
            self.metrics,
            limiter_clock=limiter_clock,
            refused=self.refused,
        )
        self._api_socket = listen_socket(config.listen, "--listen")
        try:
            self._metrics_socket = listen_socket(config.metrics_listen, "--metrics-listen")
        except ConfigError:
            self._api_socket.close()
            raise
        self._api = _Server(_uvicorn_config(app, self.limits, lifespan="on"))
        metrics_app = self.metrics.asgi_app()
        self._metrics = _Server(_uvicorn_config(metrics_app, METRICS_LIMITS, lifespan="off"))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serving = threading.Event()

    @property
    def api_port(self) -> int:
        return int(self._api_socket.getsockname()[1])

    @property
    def metrics_port(self) -> int:
        return int(self._metrics_socket.getsockname()[1])

    async def serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._serving.set()
        handle_signals = threading.current_thread() is threading.main_thread()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self.stop)
        log.info(
            "collector listening",
            extra={
                "version": __version__,
                "api": format_address((self.config.listen[0], self.api_port)),
                "metrics": format_address((self.config.metrics_listen[0], self.metrics_port)),
                "historyTtl": self.config.history_ttl,
            },
        )
        try:
            await asyncio.gather(
                self._api.serve(sockets=[self._api_socket]),
                self._metrics.serve(sockets=[self._metrics_socket]),
            )
        finally:
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self._loop.remove_signal_handler(sig)
            log.info("collector stopped")

    def stop(self) -> None:
        """On the service's loop; from another thread use ``stop_threadsafe``."""
        self.broker.close()
        self._api.should_exit = True
        self._metrics.should_exit = True

    def stop_threadsafe(self) -> None:
        """From any thread, once ``serve`` has begun (it waits for that)."""
        self._serving.wait()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.stop)


def run(config: CollectorConfig) -> int:
    """Serves until SIGTERM or SIGINT. Raises ConfigError when a port cannot be bound, and
    KubeConfigError for a kubeconfig that exists but is broken."""
    if config.log_level != "debug":
        # Both servers would log their start and stop; "collector listening/stopped" say it once.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    _raise_fd_limit()
    correlator = _connect(list(config.watch_namespaces), config.history_ttl)
    service = Service(config, correlator)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(service.serve())
    return 0


def _connect(namespaces: list[str], history_ttl: float) -> Correlator | None:
    """Without Kubernetes the pulls are still worth showing, without pod names; a configuration
    that exists but is broken is the user's to fix, so it stops the collector. Kubelet's pulls
    are kept as long as the agents' finished ones (``--history-ttl``)."""
    try:
        from pulltrace.kube.correlator import connect
    except ImportError as err:
        log.warning(f"Kubernetes correlation off: {err}")
        return None
    # A broken kubeconfig raises KubeConfigError.
    correlator: Correlator | None = connect(namespaces, history_ttl=history_ttl)
    if correlator is None:
        log.warning("Kubernetes correlation off: no in-cluster service account or kubeconfig")
    return correlator


def process_limits(nofile: int | None = None) -> HttpLimits:
    """The default limits, with the connection cap lowered to fit the process's file
    descriptor limit (``nofile``, read when None): past it ``accept`` fails and even
    ``/healthz`` cannot get through."""
    if nofile is None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    limits = HttpLimits()
    if nofile == resource.RLIM_INFINITY:
        return limits
    cap = max(16, min(limits.max_connections, nofile - FD_RESERVE))
    return dataclasses.replace(limits, max_connections=cap)


def _raise_fd_limit() -> None:
    """Raises the soft file descriptor limit to the hard one, as Go programs do at start:
    the soft default is often 1024, below what the connection cap is sized for."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _uvicorn_config(
    app: ASGIApp, limits: HttpLimits, *, lifespan: Literal["on", "off"]
) -> uvicorn.Config:
    """``limit_max_requests`` is not used: it makes uvicorn exit after that many requests, a
    worker-recycling tool for process managers."""
    return uvicorn.Config(
        RefusedBody(app, limits.linger_timeout),
        lifespan=lifespan,
        http=protocol_class(limits),
        timeout_keep_alive=limits.keep_alive_timeout,
        # A request on the connection that reaches the cap gets a 503 with Connection: close;
        # connections past it are closed unread (protocol.BoundedHttpTools).
        limit_concurrency=limits.max_connections,
        # Our JSON logging, not uvicorn's; one access line per agent report would swamp it.
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        backlog=2048,
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return loop_factory
