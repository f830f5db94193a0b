"""A thousand live pulls must cost a redraw of what changed and is on screen, never a rebuild:
counted, not timed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from pulltrace.client.source import ConnectionState, Event, Message, Snapshot
from pulltrace.model import PodRef, PullEvent, PullStatus
from pulltrace.tui.app import PulltraceApp
from pulltrace.tui.widgets.pull_table import MARGIN, PullTable

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


class Calls:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, table: PullTable) -> None:
        self.updates: list[tuple[str, str]] = []
        self.rebuilds = 0
        original = table.update_cell

        def update_cell(row: Any, column: Any, value: Any, **kw: Any) -> None:
            self.updates.append((str(row), str(column)))
            original(row, column, value, **kw)

        def counted(name: str) -> None:
            method = getattr(table, name)

            def wrapper(*args: Any, **kw: Any) -> Any:
                self.rebuilds += 1
                return method(*args, **kw)

            monkeypatch.setattr(table, name, wrapper)

        monkeypatch.setattr(table, "update_cell", update_cell)
        for name in ("clear", "add_row", "remove_row"):
            counted(name)


async def test_a_batch_touches_only_changed_cells_of_changed_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = pulls()
    app = PulltraceApp(Once(base), clock=lambda: T0.timestamp() + 60, flush_interval=3600.0)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        app.flush()
        table = app.main_screen.query_one(PullTable)
        assert table.row_count == N
        order_before = list(table.order)
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

        changed_ids = {p.id for p in changed}
        window = set(table.order[: table.scrollable_content_region.height + MARGIN])
        assert {row for row, _ in calls.updates} == changed_ids & window
        assert {column for _, column in calls.updates} <= {"progress", "size", "speed", "eta"}
        assert table.stale == changed_ids - window, "rows out of sight wait until seen"
        assert calls.rebuilds == 0
        assert table.order == order_before

        calls.updates.clear()
        app.flush()
        assert calls.updates == [], "an empty batch redraws nothing"

        await pilot.pause()
        assert table.max_scroll_y > 0
        while table.scroll_y < table.max_scroll_y:
            table.scroll_to(y=table.scroll_y + table.size.height, animate=False, immediate=True)
            await pilot.pause()
        assert table.stale == set()
        assert {row for row, _ in calls.updates} == changed_ids - window
        assert calls.rebuilds == 0


async def test_every_pull_at_2_hz_is_still_cell_updates_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = pulls()
    app = PulltraceApp(Once(base), clock=lambda: T0.timestamp() + 60, flush_interval=3600.0)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        app.flush()
        table = app.main_screen.query_one(PullTable)
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
        window = set(table.order[: table.scrollable_content_region.height + MARGIN])
        assert {row for row, _ in calls.updates} == window
        assert len(calls.updates) <= 4 * 4 * len(window)
