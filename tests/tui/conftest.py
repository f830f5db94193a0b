"""The seeded demo, frozen after its warm-up, is the fixture for every screen test: the same
cluster, the same instant, so assertions and snapshots are exact."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from textual.pilot import Pilot

from pulltrace.client.demo import DemoSource
from pulltrace.client.endpoint import Endpoint
from pulltrace.client.history import HistoryClient
from pulltrace.client.source import Source
from pulltrace.collector.history.demo import seed_history
from pulltrace.collector.history.sqlite import SqliteHistory
from pulltrace.sim import SimCluster
from pulltrace.tui.app import PulltraceApp
from pulltrace.tui.screens.main import MainScreen
from tests.collector.conftest import FAST, start

START = 1_768_470_000.0
WARMUP = 90.0
SEED = 7


@pytest.fixture(autouse=True, scope="session")
def utc() -> Iterator[None]:
    """The detail screen shows local times; snapshots need one zone."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


def demo_app(
    namespace: str | None = None, node: str | None = None, all_namespaces: bool = False
) -> PulltraceApp:
    """A frozen demo; its timer never fires within a test, so ``settle`` decides when
    batches apply."""
    source = DemoSource(seed=SEED, start=START, warmup=WARMUP, follow=False)
    return PulltraceApp(
        source,
        namespace=namespace,
        node=node,
        all_namespaces=all_namespaces,
        clock=lambda: START + WARMUP,
        flush_interval=3600.0,
    )


async def settle(pilot: Pilot[None]) -> None:
    """Waits until the demo has yielded its warm-up, then applies it as one batch."""
    app = pilot.app
    assert isinstance(app, PulltraceApp)
    source = app.source
    assert isinstance(source, DemoSource)
    while not source.warm:
        await pilot.pause()
    app.flush()
    await pilot.pause()


def main_screen(app: PulltraceApp) -> MainScreen:
    """The pull list, always at the bottom of the screen stack."""
    screen = app.screen_stack[0]
    assert isinstance(screen, MainScreen)
    return screen


@pytest.fixture
def history_endpoint(tmp_path: Path) -> Iterator[Endpoint]:
    """A real collector with history: uvicorn on loopback over a temporary SQLite directory,
    which holds the demo's past week and DIUN notices (``seed_history``, the code a demo
    collector runs) written as of the frozen demo's instant, so the views are the same at
    every run."""
    data = tmp_path / "data"
    backend = SqliteHistory(str(data))
    try:
        seed_history(backend, SEED, [n.name for n in SimCluster(SEED).nodes], START + WARMUP)
    finally:
        backend.close()
    # The frozen instant is in the past: a retention counted from today's clock must keep it.
    retention = time.time() - START + 30 * 86400
    running = start(replace(FAST, data_dir=str(data), history_retention=retention))
    try:
        endpoint = Endpoint(running.url, label="test collector")
        wait_ready(endpoint)
        yield endpoint
    finally:
        running.stop()


def wait_ready(endpoint: Endpoint) -> None:
    """Until the collector answers; the socket is bound before it serves, so a request waits in
    the backlog rather than failing."""
    client = HistoryClient(endpoint)
    client.tags()


def history_app(endpoint: Endpoint | None, source: Source | None = None) -> PulltraceApp:
    """The frozen demo (or ``source``) with the collector's history: facts are fetched at mount
    and never again within a test unless a view changes them."""
    return PulltraceApp(
        source or DemoSource(seed=SEED, start=START, warmup=WARMUP, follow=False),
        clock=lambda: START + WARMUP,
        flush_interval=3600.0,
        history=endpoint,
        history_interval=3600.0,
    )


async def facts_loaded(pilot: Pilot[None]) -> None:
    """Waits for the app's first fetch of updates and statistics to be shown."""
    app = pilot.app
    assert isinstance(app, PulltraceApp)
    while not (app.facts.groups or app.facts.error):
        await pilot.pause()
    await pilot.pause()
