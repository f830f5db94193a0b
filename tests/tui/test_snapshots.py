"""Screens as a user sees them, on the frozen seeded demo. Update after a deliberate change
with ``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVGs."""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot

from pulltrace.client.endpoint import Endpoint
from pulltrace.client.history import HistoryClient
from pulltrace.tui.screens.history import HistoryScreen
from pulltrace.tui.screens.tags import TagScreen
from pulltrace.tui.screens.updates import UpdatesScreen
from tests.tui.conftest import demo_app, facts_loaded, history_app, settle

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


def with_history(*keys: str, wait: str = "") -> Callable[[Pilot[None]], object]:
    """Settles, waits for the app's first fetch of the collector's facts, presses ``keys``, then
    waits until the view ``wait`` names has its answer."""

    async def run_before(pilot: Pilot[None]) -> None:
        await settle(pilot)
        await facts_loaded(pilot)
        await pilot.press(*keys)
        await pilot.pause()
        screen = pilot.app.screen
        if wait == "history":
            assert isinstance(screen, HistoryScreen)
            while not screen.loaded:
                await pilot.pause()
        elif wait == "updates":
            assert isinstance(screen, UpdatesScreen)
            while not screen.loads:
                await pilot.pause()
        await pilot.pause()

    return run_before


def test_main_with_update_badges(snap_compare: Compare, history_endpoint: Endpoint) -> None:
    app = history_app(history_endpoint)
    assert snap_compare(app, terminal_size=(140, 40), run_before=with_history())


def test_history(snap_compare: Compare, history_endpoint: Endpoint) -> None:
    keys = ("colon", *"history", "enter")
    app = history_app(history_endpoint)
    assert snap_compare(
        app, terminal_size=(130, 30), run_before=with_history(*keys, wait="history")
    )


def test_updates(snap_compare: Compare, history_endpoint: Endpoint) -> None:
    keys = ("colon", *"updates", "enter")
    app = history_app(history_endpoint)
    assert snap_compare(
        app, terminal_size=(130, 20), run_before=with_history(*keys, wait="updates")
    )


def test_history_summary(snap_compare: Compare, history_endpoint: Endpoint) -> None:
    keys = ("colon", *"history", "enter")
    app = history_app(history_endpoint)

    async def run_before(pilot: Pilot[None]) -> None:
        await with_history(*keys, wait="history")(pilot)  # type: ignore[misc]
        await pilot.press("down", "enter")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(110, 30), run_before=run_before)


def test_tag_prompt(snap_compare: Compare, history_endpoint: Endpoint) -> None:
    HistoryClient(history_endpoint).create_tag("production")
    HistoryClient(history_endpoint).create_tag("ml")
    keys = ("colon", *"updates", "enter")
    app = history_app(history_endpoint)

    async def run_before(pilot: Pilot[None]) -> None:
        await with_history(*keys, wait="updates")(pilot)  # type: ignore[misc]
        await pilot.press("t")
        while not isinstance(pilot.app.screen, TagScreen):
            await pilot.pause()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(110, 24), run_before=run_before)
