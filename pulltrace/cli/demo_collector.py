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
from typing import TYPE_CHECKING

from pulltrace.client.endpoint import Client, CollectorError, Endpoint

if TYPE_CHECKING:
    from pulltrace.client.connect import Plan
    from pulltrace.sim import SimCluster

READY_DEADLINE = 30.0
"""Seconds for the collector to answer its first ``/healthz``."""
STEP = 0.5
"""Seconds between the simulated agents' reports."""
REPORTS_PER_SECOND = 10.0
"""The demo's per-node report rate limit: above the simulation's two a second."""
MISSING_SERVER = (
    "the demo's collector needs the collector extra: pip install 'pulltrace[collector]'"
)


def collector_installed() -> bool:
    """Whether this install can run a collector: ``pip install pulltrace`` alone cannot."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("uvicorn", "starlette"))


STOP_DEADLINE = 10.0
_PROBE = 1.0
"""One readiness probe's deadline: the socket is bound before the server runs, so a probe
waits in the listen backlog until the server answers; a short one notices a server thread that
died instead of waiting out the whole deadline."""


@contextlib.contextmanager
def demo_collector(seed: int = 7, *, live: bool = False) -> Iterator[Endpoint]:
    """A demo collector on ``127.0.0.1:0``, serving until the block ends; yields where it
    answers. ``live``: ``pulltrace.sim``'s cluster reports to it as its agents would (POSTs to
    ``/api/v1/report`` every half second, pods matched by the simulation), so its pulls, nodes
    and event stream move too, not only its history. Raises ``CollectorError`` when it does not
    come up (the history database cannot be created, say): the user gets the line, not a
    traceback from a thread; ``ResolveError`` when the install has no collector."""
    import asyncio
    import time

    if not collector_installed():
        from pulltrace.client.connect import ResolveError

        raise ResolveError(MISSING_SERVER)
    from pulltrace.collector.config import CollectorConfig
    from pulltrace.collector.server import Service
    from pulltrace.sim import SimCluster

    config = CollectorConfig(
        listen=("127.0.0.1", 0),
        metrics_listen=("127.0.0.1", 0),
        log_level="warning",
        demo_history_seed=seed,
        reports_per_second=REPORTS_PER_SECOND,
    )
    cluster = SimCluster(seed, start=time.time()) if live else None
    service = Service(config, cluster.pods if cluster else None)
    failed: list[BaseException] = []
    stop = threading.Event()

    def serve() -> None:
        try:
            asyncio.run(service.serve())
        except BaseException as err:  # reported by the caller's thread, once
            failed.append(err)

    thread = threading.Thread(target=serve, name="pulltrace-demo-collector", daemon=True)
    thread.start()
    endpoint = Endpoint(f"http://127.0.0.1:{service.api_port}", label="demo collector")
    feeder = None
    try:
        _wait_ready(endpoint, thread, failed, time.monotonic() + READY_DEADLINE)
        if cluster is not None:
            feeder = threading.Thread(
                target=_feed, args=(cluster, endpoint, stop), name="pulltrace-demo-agents"
            )
            feeder.daemon = True
            feeder.start()
        yield endpoint
    finally:
        stop.set()
        if feeder is not None:
            feeder.join(STOP_DEADLINE)
        if thread.is_alive():
            service.stop_threadsafe()
            thread.join(STOP_DEADLINE)


def _feed(cluster: SimCluster, endpoint: Endpoint, stop: threading.Event) -> None:
    """The simulated agents: each step's reports, POSTed as ``pulltrace agent`` would, until
    ``stop``. A refused or lost report is dropped, as a real agent's next one supersedes it."""
    import time

    client = Client(endpoint)
    while not stop.wait(STEP):
        for report in cluster.step(time.time()):
            with contextlib.suppress(CollectorError):
                client.send_json("POST", "/api/v1/report", report, deadline=STEP * 4)


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


@contextlib.contextmanager
def collector_endpoint(plan: Plan, what: str) -> Iterator[Endpoint]:
    """Where ``what`` (a command, a view) reads the collector's API for ``plan``: the
    collector it resolved to (``--server`` or the kubeconfig's service proxy), or a demo
    collector for ``--demo``. Raises ``ResolveError`` for a source that has no collector (the
    Kubernetes API alone, a containerd socket): only a collector keeps a history."""
    from pulltrace.client.connect import ResolveError

    if plan.kind == "demo":
        with demo_collector(plan.seed) as endpoint:
            yield endpoint
        return
    if plan.kind in ("collector", "proxy") and plan.endpoint is not None:
        yield plan.endpoint
        return
    kinds = {"containerd": "the source is a containerd socket"}
    why = plan.notice.partition(";")[0] or kinds.get(plan.kind, "only the Kubernetes API answers")
    raise ResolveError(
        f"{what} needs the pulltrace collector (--server URL, a cluster that runs it, or "
        f"--demo), but {why}"
    )
