"""Screens as a user sees them, on the frozen seeded demo. Update after a deliberate change
with ``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVGs."""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot

from tests.tui.conftest import demo_app, settle

Compare = Callable[..., bool]


def then(*keys: str) -> Callable[[Pilot[None]], object]:
    async def run_before(pilot: Pilot[None]) -> None:
        await settle(pilot)
        await pilot.press(*keys)
        await pilot.pause()

    return run_before


def test_main_80x24(snap_compare: Compare) -> None:
    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=then())


def test_main_160x45(snap_compare: Compare) -> None:
    assert snap_compare(demo_app(), terminal_size=(160, 45), run_before=then())


def test_main_filtered_and_sorted(snap_compare: Compare) -> None:
    keys = ("slash", *"grafana", "enter", "S")
    assert snap_compare(demo_app(), terminal_size=(120, 30), run_before=then(*keys))


def test_detail(snap_compare: Compare) -> None:
    assert snap_compare(demo_app(), terminal_size=(100, 30), run_before=then("down", "enter"))


def test_detail_80x24(snap_compare: Compare) -> None:
    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=then("enter"))


def test_help(snap_compare: Compare) -> None:
    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=then("question_mark"))
