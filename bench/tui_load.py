"""What a frame of ``pulltrace watch`` costs with 1 000 live pulls updating at 2 Hz.

The TUI runs headless (``App.run_test``), so the numbers are the application's own work: apply
one batch of events to the store, update the table, and let Textual lay out and render the
screen. A frame is measured in CPU time, from the batch's arrival until Textual is idle again:
the wall time of that interval also holds the test harness's idle polling (sleeps of 20 ms),
which no terminal user waits for. Every pull changes in every batch, the worst case for a busy
cluster. The peer, in the same run and on the same batches, is the obvious implementation on
Textual's stock ``DataTable`` (same columns, same cells): clear it and add every row again on
each batch. The target is a p95 frame of at most 50 ms.

Run from the repository root::

    python -m bench.tui_load [--seconds 30] [--pulls 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec
import psutil
from rich.text import Text
from textual.widgets import DataTable

from pulltrace.client.source import ConnectionState, Event, Message, Snapshot
from pulltrace.client.store import order
from pulltrace.model import PodRef, PullEvent, PullStatus
from pulltrace.tui.app import PulltraceApp
from pulltrace.tui.columns import row_cells
from pulltrace.tui.screens.main import MainScreen
from pulltrace.tui.widgets.pull_table import PullTable

MiB = 1024 * 1024
T0 = datetime(2026, 1, 15, 9, 40, tzinfo=UTC)
TARGET_P95_MS = 50.0
RATE_HZ = 2.0
WARMUP_FRAMES = 2
"""The first frames lay the screen out once and fill caches; they are not counted."""


def initial(n: int) -> list[PullStatus]:
    return [
        PullStatus(
            id=f"pull-{i:05d}",
            node_name=f"node-{i % 100:03d}",
            image_ref=f"registry.example.com/team-{i % 9}/service-{i % 250}:v1.{i % 17}",
            repository=f"registry.example.com/team-{i % 9}/service-{i % 250}",
            total_bytes=(200 + i % 800) * MiB,
            cached_bytes=(i % 5) * 10 * MiB,
            bytes_per_sec=MiB,
            eta_seconds=600.0,
            started_at=T0 + timedelta(seconds=i / 100),
            total_known=True,
            layer_count=8,
            pods=[PodRef(namespace=f"ns-{i % 12}", pod_name=f"service-{i % 250}-7d9f-{i:05d}")],
        )
        for i in range(n)
    ]


def batch(pulls: list[PullStatus], step: int) -> list[Message]:
    """Every pull moves on: bytes, percent, speed and ETA all change."""
    stamp = T0 + timedelta(seconds=step / RATE_HZ)
    out: list[Message] = []
    for i, pull in enumerate(pulls):
        speed = (1.0 + (i * 7 + step * 3) % 40) * MiB
        done = min(pull.total_bytes - pull.cached_bytes, step * 2 * MiB + (i % 13) * MiB)
        moved = msgspec.structs.replace(
            pull,
            downloaded_bytes=done,
            percent=100.0 * (done + pull.cached_bytes) / pull.total_bytes,
            bytes_per_sec=speed,
            eta_seconds=(pull.total_bytes - pull.cached_bytes - done) / speed,
        )
        event = PullEvent(
            timestamp=stamp, type="pull.progress", node_name=pull.node_name, pull=moved
        )
        out.append(Event(event))
    return out


class Quiet:
    """Connects, sends the snapshot and stays open; the benchmark hands batches to the app."""

    description = "bench"
    context = ""

    def __init__(self, pulls: list[PullStatus]) -> None:
        self.pulls = pulls

    async def __aiter__(self) -> AsyncIterator[Message]:
        yield ConnectionState("live")
        yield Snapshot(self.pulls)
        await asyncio.Event().wait()


@dataclass
class Result:
    name: str
    frames_ms: list[float]
    cpu_percent: float
    rows_drawn: int

    def line(self) -> str:
        median = statistics.median(self.frames_ms)
        return (
            f"{self.name:<24} frames {len(self.frames_ms):>4}  CPU per frame: median "
            f"{median:6.1f} ms  p95 {self.p95:6.1f} ms  max {max(self.frames_ms):6.1f} ms"
            f"  process CPU {self.cpu_percent:5.1f}%  rows redrawn {self.rows_drawn}"
        )

    @property
    def p95(self) -> float:
        frames = sorted(self.frames_ms)
        return frames[min(len(frames) - 1, round(0.95 * (len(frames) - 1)))]


class Naive:
    """The peer: a stock ``DataTable`` in the pull table's place, cleared and filled with every
    row on each batch."""

    def __init__(self, app: PulltraceApp, screen: MainScreen, table: DataTable[Text]) -> None:
        self.app = app
        self.screen = screen
        self.table = table
        self.rows = 0
        lay = screen.table.lay
        assert lay is not None
        self.lay = lay
        for column in lay.columns:
            table.add_column(column.label, width=column.width, key=column.key)

    def update(self, dirty: set[str], structural: bool) -> None:
        app, now = self.app, self.app.now()
        self.table.clear()
        for pull in order(app.store.pulls(), self.screen.pull_query, now):
            cells = row_cells(pull, self.lay, now, app.color).values()
            self.table.add_row(*(Text.assemble(*cell, end="") for cell in cells), key=pull.id)
        self.rows += self.table.row_count
        self.screen.header.show_totals(app.store)


async def measure(name: str, pulls: list[PullStatus], seconds: float, peer: bool) -> Result:
    app = PulltraceApp(Quiet(pulls), clock=lambda: T0.timestamp(), flush_interval=3600.0)
    frames: list[float] = []
    process = psutil.Process()
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        app.flush()
        await pilot.pause()
        screen = app.screen_stack[0]
        assert isinstance(screen, MainScreen)
        table = screen.query_one(PullTable)
        naive: Naive | None = None
        if peer:
            stock: DataTable[Text] = DataTable(cursor_type="row", id="peer")
            stock.styles.height = "1fr"
            await screen.mount(stock, after=table)
            table.display = False
            naive = Naive(app, screen, stock)
            screen.update = naive.update  # type: ignore[method-assign]
            naive.update(set(), True)
            await pilot.pause()
            naive.rows = 0
        before = table.row_updates
        steps = int(seconds * RATE_HZ)
        cpu0, wall0 = process.cpu_times(), time.perf_counter()
        next_tick = wall0
        for step in range(1, steps + 1):
            messages = batch(pulls, step)
            start = time.process_time()
            app.inbox.extend(messages)
            app.flush()
            await pilot.pause()  # lets Textual lay out and render the frame
            if step > WARMUP_FRAMES:
                frames.append(1000 * (time.process_time() - start))
            next_tick += 1 / RATE_HZ
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
        cpu1, wall1 = process.cpu_times(), time.perf_counter()
        cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (wall1 - wall0)
        if naive is not None:
            assert naive.table.row_count == len(pulls)
            drawn = naive.rows
        else:
            assert table.row_count == len(pulls)
            drawn = table.row_updates - before
        return Result(name, frames, 100 * cpu, drawn)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--pulls", type=int, default=1000)
    args = parser.parse_args()
    pulls = initial(args.pulls)
    print(f"{args.pulls} pulls, every one changing at {RATE_HZ:.0f} Hz, {args.seconds:.0f} s each")
    ours = await measure("pulltrace (line API)", pulls, args.seconds, peer=False)
    print(ours.line())
    peer = await measure("peer (DataTable re-add)", pulls, args.seconds, peer=True)
    print(peer.line())
    print(
        f"p95 ratio peer/ours {peer.p95 / ours.p95:.1f}x; target p95 <= {TARGET_P95_MS:.0f} ms: "
        + ("met" if ours.p95 <= TARGET_P95_MS else "MISSED")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
