"""The real collector on loopback: uvicorn serving the app on free ports in a thread of its own,
with short ticks, torn down by the same graceful stop that SIGTERM triggers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from pulltrace.collector.config import CollectorConfig
from pulltrace.collector.server import Service, _loop_factory
from pulltrace.model import AgentReport, LayerStatus, PodRef, PullStatus, encode

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NGINX = "docker.io/library/nginx"
DIGEST = "sha256:" + "d" * 64

FAST = CollectorConfig(
    listen=("127.0.0.1", 0),
    metrics_listen=("127.0.0.1", 0),
    tick_interval=0.02,
    stale_check_interval=0.02,
    fanout_interval=0.01,
    progress_interval=0.05,
)


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class FakeCorrelator:
    """Satisfies the Correlator protocol; ``changed`` fires the listener from the caller's
    thread, which in the HTTP tests is not the collector's, as with a real watch thread."""

    synced: bool = False
    pods: dict[tuple[str, str], tuple[list[PodRef], str]] = field(default_factory=dict)
    kubelet: list[PullStatus] = field(default_factory=list)
    listener: Callable[[], None] | None = None

    def match(self, node: str, repository: str, manifest_digest: str) -> tuple[list[PodRef], str]:
        return self.pods.get((node, repository), ([], ""))

    def kubelet_pulls(self) -> list[PullStatus]:
        return list(self.kubelet)

    def set_listener(self, fn: Callable[[], None]) -> None:
        self.listener = fn

    def changed(self) -> None:
        assert self.listener is not None
        self.listener()


def layer(
    n: int, total: int = 1000, done: int = 0, *, cached: bool = False, pull: str = "p"
) -> LayerStatus:
    finished = cached or done >= total
    return LayerStatus(
        digest=f"sha256:{pull}-layer-{n}",
        media_type="application/vnd.oci.image.layer.v1.tar+gzip",
        total_bytes=total,
        downloaded_bytes=0 if cached else done,
        percent=100.0 if finished else 100.0 * done / total,
        started_at=T0 if done and not cached else None,
        completed_at=T0 + timedelta(seconds=n + 1) if done >= total and not cached else None,
        cached=cached,
        total_known=True,
    )


def pull(
    pull_id: str,
    *,
    node: str = "node-a",
    digest: str = DIGEST,
    repo: str = NGINX,
    layers: list[LayerStatus] | None = None,
    phase: str | None = None,
    error: str = "",
    started: datetime = T0,
    **extra: Any,
) -> PullStatus:
    """As the agent would report it: totals and phase follow from the layers."""
    layers = [layer(0)] if layers is None else layers
    total = sum(x.total_bytes for x in layers)
    cached = sum(x.total_bytes for x in layers if x.cached)
    downloaded = sum(x.downloaded_bytes for x in layers)
    finished = all(x.cached or x.completed_at for x in layers)
    resolved_phase = phase or ("completed" if finished else "pulling")
    completed_at = max((x.completed_at for x in layers if x.completed_at), default=None)
    status = PullStatus(
        id=pull_id,
        node_name=node,
        image_ref=f"{repo}@{digest}" if digest else "",
        repository=repo,
        manifest_digest=digest,
        phase=resolved_phase,  # type: ignore[arg-type]
        total_bytes=total,
        downloaded_bytes=downloaded,
        cached_bytes=cached,
        percent=100.0 * (downloaded + cached) / total if total else 0.0,
        layer_count=len(layers),
        layers_done=sum(1 for x in layers if x.cached or x.completed_at),
        layers_cached=sum(1 for x in layers if x.cached),
        started_at=started,
        completed_at=completed_at if resolved_phase in ("completed", "failed") else None,
        error=error,
        layers=layers,
        total_known=True,
    )
    return replace_struct(status, **extra)


def resolving(pull_id: str, blob: str, *, node: str = "node-a") -> PullStatus:
    """An ingest whose manifest is not committed yet, as the agent reports it."""
    return PullStatus(
        id=pull_id,
        node_name=node,
        phase="resolving",
        total_bytes=1500,
        downloaded_bytes=1200,
        percent=80.0,
        layer_count=1,
        started_at=T0,
        layers=[LayerStatus(digest=blob, total_bytes=1500, downloaded_bytes=1200, started_at=T0)],
    )


def replace_struct(status: PullStatus, **changes: Any) -> PullStatus:
    return msgspec.structs.replace(status, **changes)


def report(
    node: str, pulls: list[PullStatus], *, at: float = 0.0, interval: float = 1.0
) -> AgentReport:
    return AgentReport(
        node_name=node,
        timestamp=T0 + timedelta(seconds=at),
        pulls=pulls,
        agent_version="test",
        interval_seconds=interval,
    )


def body(node: str, pulls: list[PullStatus], **kw: Any) -> bytes:
    return encode(report(node, pulls, **kw))


@dataclass
class Running:
    service: Service
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.api_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.service.metrics_port}/metrics"

    def stop(self) -> None:
        if self.thread.is_alive():
            self.service.stop_threadsafe()
            self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the collector did not shut down"


def start(
    config: CollectorConfig = FAST,
    correlator: FakeCorrelator | None = None,
    **service_kw: Any,
) -> Running:
    service = Service(config, correlator, **service_kw)

    def main() -> None:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(service.serve())

    thread = threading.Thread(target=main, name="collector", daemon=True)
    thread.start()
    return Running(service, thread)


@pytest.fixture
def launch() -> Iterator[Callable[..., Running]]:
    """Start collectors with any configuration; all are stopped at the end of the test."""
    started: list[Running] = []

    def _launch(
        correlator: FakeCorrelator | None = None, *, base: CollectorConfig = FAST, **kw: Any
    ) -> Running:
        service_kw = {k: kw.pop(k) for k in ("clock", "limiter_clock") if k in kw}
        running = start(replace(base, **kw), correlator, **service_kw)
        started.append(running)
        return running

    yield _launch
    for running in started:
        running.stop()


@pytest.fixture
def collector(launch: Callable[..., Running]) -> Running:
    return launch()


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """For server-side state no client can observe as an event (a freed client slot): checks
    the condition each loop turn, and fails only after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)
