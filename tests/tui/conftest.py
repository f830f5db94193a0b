"""The seeded demo, frozen after its warm-up, is the fixture for every screen test: the same
cluster, the same instant, so assertions and snapshots are exact."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from textual.pilot import Pilot

from pulltrace.client.demo import DemoSource
from pulltrace.tui.app import PulltraceApp
from pulltrace.tui.screens.main import MainScreen

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
