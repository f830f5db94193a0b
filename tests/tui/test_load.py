"""A thousand live pulls must cost a redraw of what changed and is on screen, never a rebuild:
counted, not timed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from textual.pilot import Pilot

from pulltrace.client.source import ConnectionState, Event, Message, Snapshot
from pulltrace.model import PodRef, PullEvent, PullStatus
from pulltrace.tui.app import PulltraceApp
from pulltrace.tui.widgets.pull_table import PullTable
from tests.tui.conftest import main_screen

T0 = datetime(2026, 1, 15, 9, 40, tzinfo=UTC)
MiB = 1024 * 1024
N = 1000


def pulls() -> list[PullStatus]:
    return [
        PullStatus(
            id=f"pull-{i:04d}",
            node_name=f"node-{i % 50:02d}",
            image_ref=f"registry.example.com/team-{i % 7}/service-{i}:v1.{i % 13}",
            repository=f"registry.example.com/team-{i % 7}/service-{i}",
            total_bytes=500 * MiB,
            downloaded_bytes=i * 1000,
            percent=0.0,
            bytes_per_sec=1.0 * MiB,
            eta_seconds=500.0,
            started_at=T0 + timedelta(seconds=i / 10),
            total_known=True,
            pods=[PodRef(namespace="ns", pod_name=f"service-{i}-abc")],
        )
        for i in range(N)
    ]


def progressed(pull: PullStatus, step: int) -> PullStatus:
    done = pull.downloaded_bytes + step * 4 * MiB
    return msgspec.structs.replace(
        pull,
        downloaded_bytes=done,
        percent=100.0 * done / pull.total_bytes,
        bytes_per_sec=(1.0 + step) * MiB,
        eta_seconds=(pull.total_bytes - done) / ((1.0 + step) * MiB),
    )


class Once:
    description = "load"
    context = ""

    def __init__(self, pulls: list[PullStatus]) -> None:
        self.pulls = pulls

    async def __aiter__(self) -> AsyncIterator[Message]:
        yield ConnectionState("live")
        yield Snapshot(self.pulls)


@asynccontextmanager
async def loaded(
    base: list[PullStatus],
) -> AsyncIterator[tuple[PulltraceApp, Pilot[None], PullTable]]:
    """The app at 160x45 with ``base`` applied as its snapshot."""
    app = PulltraceApp(Once(base), clock=lambda: T0.timestamp() + 60, flush_interval=3600.0)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        app.flush()
        await pilot.pause()
        yield app, pilot, main_screen(app).query_one(PullTable)


class Calls:
    """Counts what a batch costs the table: rows whose cells were recomputed and found changed
    (each one is a strip rebuilt and a line repainted), and whole-table rebuilds."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, table: PullTable) -> None:
        self.updates: list[str] = []
        self.rebuilds = 0
        refresh_row = table.refresh_row
        rebuild = table.rebuild

        def counted_refresh(pull_id: str) -> bool:
            changed = refresh_row(pull_id)
            if changed:
                self.updates.append(pull_id)
            return changed

        def counted_rebuild(*args: Any, **kw: Any) -> None:
            self.rebuilds += 1
            rebuild(*args, **kw)

        monkeypatch.setattr(table, "refresh_row", counted_refresh)
        monkeypatch.setattr(table, "rebuild", counted_rebuild)


def on_screen(table: PullTable) -> set[str]:
    """Rows in view below the header line."""
    top = round(table.scroll_y)
    return set(table.order[top : top + table.scrollable_content_region.height - 1])


async def scroll_through(pilot: Pilot[None], table: PullTable) -> None:
    """A page at a time (the rows under the header), so that every row comes into view."""
    page = table.size.height - 1
    while table.scroll_y < table.max_scroll_y:
        table.scroll_to(y=table.scroll_y + page, animate=False, immediate=True)
        await pilot.pause()


async def test_a_batch_touches_only_changed_rows_in_view(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = pulls()
    async with loaded(base) as (app, pilot, table):
        assert table.row_count == N
        await scroll_through(pilot, table)
        assert table.shown.keys() == set(table.order), "every row drawn once"
        table.scroll_to(y=0, animate=False, immediate=True)
        await pilot.pause()
        order_before = list(table.order)
        window = on_screen(table)
        calls = Calls(monkeypatch, table)

        changed = base[::10]
        for pull in changed:
            event = PullEvent(
                timestamp=T0 + timedelta(seconds=61),
                type="pull.progress",
                node_name=pull.node_name,
                pull=progressed(pull, 1),
            )
            app.inbox.append(Event(event))
        app.flush()
        await pilot.pause()

        changed_ids = {p.id for p in changed}
        assert sorted(calls.updates) == sorted(changed_ids & window), "once each, in view only"
        assert table.stale == changed_ids - window, "rows out of sight wait until seen"
        assert calls.rebuilds == 0
        assert table.order == order_before

        calls.updates.clear()
        app.flush()
        await pilot.pause()
        assert calls.updates == [], "an empty batch redraws nothing"

        await scroll_through(pilot, table)
        assert table.stale == set()
        assert sorted(calls.updates) == sorted(changed_ids - window)
        assert calls.rebuilds == 0


async def test_every_pull_at_2_hz_redraws_each_row_in_view_once_per_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = pulls()
    async with loaded(base) as (app, pilot, table):
        window = on_screen(table)
        calls = Calls(monkeypatch, table)
        for step in range(1, 5):
            for pull in base:
                event = PullEvent(
                    timestamp=T0 + timedelta(seconds=60 + step / 2),
                    type="pull.progress",
                    node_name=pull.node_name,
                    pull=progressed(pull, step),
                )
                app.inbox.append(Event(event))
            app.flush()
            await pilot.pause()
        assert calls.rebuilds == 0
        assert set(calls.updates) == window
        assert len(calls.updates) == 4 * len(window)
        assert table.stale == {p.id for p in base} - window


async def test_pulls_that_come_and_go_move_rows_and_the_cursor_stays_on_its_line() -> None:
    base = pulls()
    async with loaded(base) as (app, pilot, table):
        await pilot.press("down", "down")
        gone, after = table.order[2], table.order[3]
        stamp = T0 + timedelta(seconds=61)
        fresh = msgspec.structs.replace(base[0], id="pull-new", started_at=T0 - timedelta(1))
        for kind, pull in (("pull.removed", base[2]), ("pull.started", fresh)):
            event = PullEvent(timestamp=stamp, type=kind, node_name=pull.node_name, pull=pull)
            app.inbox.append(Event(event))
        app.flush()
        await pilot.pause()
        assert table.order[0] == "pull-new", "the oldest start comes first"
        assert gone not in table.order and gone not in table.shown
        assert table.row_count == N
        assert table.cursor_row == 2 and table.highlighted_pull() == table.order[2]
        assert "pull-new" in table.shown and table.order.index(after) == 3


async def test_batches_queued_behind_a_frame_are_one_redraw_that_loses_neither(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with loaded(pulls()) as (app, pilot, table):
        screen = main_screen(app)
        first, second = table.order[:2]
        redraws: list[set[str]] = []
        update = screen.update

        def counted(dirty: set[str], structural: bool) -> None:
            redraws.append(set(dirty))
            update(dirty, structural)

        monkeypatch.setattr(screen, "update", counted)
        before = table.row_updates
        for step, pull_id in enumerate((first, second), 1):
            view = app.store.get(pull_id)
            assert view is not None
            event = PullEvent(
                timestamp=T0 + timedelta(seconds=60 + step),
                type="pull.progress",
                node_name=view.pull.node_name,
                pull=progressed(view.pull, step),
            )
            app.inbox.append(Event(event))
            app.flush()
        await pilot.pause()
        assert redraws == [{first, second}]
        assert table.row_updates - before == 2
