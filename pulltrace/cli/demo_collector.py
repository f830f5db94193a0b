"""``--demo`` for the commands that need a collector's API (``history``, ``stats``, ``updates``):
the real collector, in this process, on a loopback port of its own.

The design has ``--demo`` simulate a cluster through the real collector code; for the history
that means the collector's own database, seeded with ``pulltrace.sim``'s past week and two DIUN
notices (``CollectorConfig.demo_history_seed``, in a temporary SQLite directory it removes at
stop), and the commands then read it over HTTP exactly as they read a cluster's collector.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from pulltrace.client.endpoint import Client, CollectorError, Endpoint

READY_DEADLINE = 30.0
"""Seconds for the collector to answer its first ``/healthz``."""
STOP_DEADLINE = 10.0
_PROBE = 1.0
"""One readiness probe's deadline: the socket is bound before the server runs, so a probe
waits in the listen backlog until the server answers; a short one notices a server thread that
died instead of waiting out the whole deadline."""


@contextlib.contextmanager
def demo_collector(seed: int = 7) -> Iterator[Endpoint]:
    """A demo collector on ``127.0.0.1:0``, serving until the block ends; yields where it
    answers. Raises ``CollectorError`` when it does not come up (the history database cannot be
    created, say): the user gets the line, not a traceback from a thread."""
    import asyncio
    import time

    from pulltrace.collector.config import CollectorConfig
    from pulltrace.collector.server import Service

    config = CollectorConfig(
        listen=("127.0.0.1", 0),
        metrics_listen=("127.0.0.1", 0),
        log_level="warning",
        demo_history_seed=seed,
    )
    service = Service(config)
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            asyncio.run(service.serve())
        except BaseException as err:  # reported by the caller's thread, once
            failed.append(err)

    thread = threading.Thread(target=serve, name="pulltrace-demo-collector", daemon=True)
    thread.start()
    endpoint = Endpoint(f"http://127.0.0.1:{service.api_port}", label="demo collector")
    try:
        _wait_ready(endpoint, thread, failed, time.monotonic() + READY_DEADLINE)
        yield endpoint
    finally:
        if thread.is_alive():
            service.stop_threadsafe()
            thread.join(STOP_DEADLINE)


def _wait_ready(
    endpoint: Endpoint, thread: threading.Thread, failed: list[BaseException], ends: float
) -> None:
    import time

    client = Client(endpoint)
    while True:
        if not thread.is_alive():
            why = f": {failed[0]}" if failed else ""
            raise CollectorError(f"the demo collector stopped before it served{why}")
        try:
            if client.get("/healthz", deadline=_PROBE).status == 200:
                return
        except CollectorError:
            if time.monotonic() > ends:
                raise
        if time.monotonic() > ends:
            raise CollectorError(f"the demo collector did not answer within {READY_DEADLINE:g} s")
        thread.join(0.05)  # a pause that ends early when the server thread dies
