"""Regenerates ``screenshots/``: the real ``watch`` app on the demo, seed 7, clock frozen after a
90-second warm-up, so every run draws the same pixels.

Run from the repository root::

    python scripts/screenshots.py

``history`` and ``updates`` read a real collector in this process (uvicorn on loopback) over a
temporary SQLite history holding the demo's past week and DIUN notices, written as of the same
frozen instant.

SVGs come from Textual itself. PNGs need ``rsvg-convert`` (Debian: ``librsvg2-bin``); without
it the script says so and writes only the SVGs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pulltrace.client.demo import DemoSource  # noqa: E402
from pulltrace.client.endpoint import Endpoint  # noqa: E402
from pulltrace.tui.app import PulltraceApp  # noqa: E402
from pulltrace.tui.screens.history import HistoryScreen  # noqa: E402
from pulltrace.tui.screens.updates import UpdatesScreen  # noqa: E402

OUT = ROOT / "screenshots"
SEED = 7
START = 1_768_470_000.0
WARMUP = 90.0


@dataclass(frozen=True)
class Shot:
    name: str
    size: tuple[int, int]
    keys: Sequence[str] = ()
    history: bool = False
    """With the demo collector's history: badges, and the ``:history`` and ``:updates`` views."""


SHOTS = (
    Shot("main", (140, 40)),
    Shot("main-80x24", (80, 24)),
    Shot("detail", (120, 34), ("down", "enter")),
    Shot("help", (100, 28), ("question_mark",)),
    Shot("history", (130, 34), ("colon", *"history", "enter"), history=True),
    Shot("updates", (130, 20), ("colon", *"updates", "enter"), history=True),
    Shot("main-updates", (140, 20), ("slash", *"library", "enter"), history=True),
)


@contextlib.contextmanager
def demo_history() -> Iterator[Endpoint]:
    """The real collector, serving a history seeded as of the frozen instant; the retention is
    counted from today, so it is stretched back to that instant."""
    from pulltrace.client.history import HistoryClient
    from pulltrace.collector.config import CollectorConfig
    from pulltrace.collector.history.demo import seed_history
    from pulltrace.collector.history.sqlite import SqliteHistory
    from pulltrace.collector.server import Service
    from pulltrace.sim import SimCluster

    with tempfile.TemporaryDirectory(prefix="pulltrace-shots-") as data:
        backend = SqliteHistory(data)
        try:
            seed_history(backend, SEED, [n.name for n in SimCluster(SEED).nodes], START + WARMUP)
        finally:
            backend.close()
        config = CollectorConfig(
            listen=("127.0.0.1", 0),
            metrics_listen=("127.0.0.1", 0),
            log_level="warning",
            data_dir=data,
            history_retention=time.time() - START + 30 * 86400,
        )
        service = Service(config)
        thread = threading.Thread(target=lambda: asyncio.run(service.serve()), daemon=True)
        thread.start()
        endpoint = Endpoint(f"http://127.0.0.1:{service.api_port}", label="demo collector")
        try:
            client = HistoryClient(endpoint)
            shop = client.create_tag("shop")  # waits in the backlog until it serves
            client.set_tag("docker.io/library/redis:7.4", shop.id)
            yield endpoint
        finally:
            service.stop_threadsafe()
            thread.join(30)


async def take(shot: Shot, history: Endpoint | None) -> str:
    source = DemoSource(seed=SEED, start=START, warmup=WARMUP, follow=False)
    app = PulltraceApp(
        source,
        clock=lambda: START + WARMUP,
        flush_interval=3600.0,
        history=history if shot.history else None,
        history_interval=3600.0,
    )
    async with app.run_test(size=shot.size) as pilot:
        while not source.warm:
            await pilot.pause()
        app.flush()
        await pilot.pause()
        while shot.history and not (app.facts.groups or app.facts.error):
            await pilot.pause()
        await pilot.press(*shot.keys)
        await pilot.pause()
        screen = app.screen
        while (isinstance(screen, HistoryScreen) and not screen.loaded) or (
            isinstance(screen, UpdatesScreen) and not screen.loads
        ):
            await pilot.pause()
        await pilot.pause()
        return app.export_screenshot(title="pulltrace watch --demo")


def to_png(svg: Path, png: Path) -> bool:
    """rsvg drops Textual's non-breaking spaces and so shifts text left; plain spaces with
    ``xml:space="preserve"`` draw the same picture."""
    converter = shutil.which("rsvg-convert")
    if converter is None:
        return False
    text = svg.read_text().replace("&#160;", " ").replace("<svg ", '<svg xml:space="preserve" ', 1)
    with tempfile.NamedTemporaryFile("w", suffix=".svg", delete=False) as tmp:
        tmp.write(text)
    try:
        subprocess.run([converter, "-z", "1.25", tmp.name, "-o", str(png)], check=True)
    finally:
        os.unlink(tmp.name)
    return True


def main() -> int:
    os.environ["TZ"] = "UTC"
    time.tzset()
    OUT.mkdir(exist_ok=True)
    pngs = True
    with demo_history() as history:
        for shot in SHOTS:
            svg = OUT / f"{shot.name}.svg"
            svg.write_text(asyncio.run(take(shot, history)))
            pngs = to_png(svg, svg.with_suffix(".png")) and pngs
            print(f"wrote {svg.relative_to(ROOT)}")
    if not pngs:
        print("rsvg-convert not found (apt-get install librsvg2-bin): PNGs not written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
