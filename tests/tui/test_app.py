"""Every key of ``watch``, driven through Textual's Pilot on the frozen seeded demo."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from rich.console import Console
from rich.style import Style
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import Input, Static

from pulltrace.client.source import ConnectionState, Message, NodeUpdate, Snapshot
from pulltrace.client.store import ACTIVE_PHASES, Query, SortKey, order
from pulltrace.model import NodeStatus, PullStatus
from pulltrace.tui import keys
from pulltrace.tui.app import PulltraceApp
from pulltrace.tui.screens.detail import DetailScreen
from pulltrace.tui.screens.help import HelpScreen, help_table
from pulltrace.tui.screens.history import HistoryScreen
from pulltrace.tui.screens.main import MainScreen
from pulltrace.tui.screens.summary import SummaryScreen
from pulltrace.tui.screens.updates import UpdatesScreen
from pulltrace.tui.widgets.header import hints_text
from pulltrace.tui.widgets.pull_table import PullTable, row_strip, table_width
from tests.tui.conftest import START, WARMUP, demo_app, main_screen, settle

NOW = datetime.fromtimestamp(START + WARMUP, UTC)


def table(app: PulltraceApp) -> PullTable:
    return main_screen(app).query_one(PullTable)


def rows(app: PulltraceApp) -> list[PullStatus]:
    """The pulls in the order the table shows them."""
    pulls = []
    for key in table(app).order:
        view = app.store.get(key)
        assert view is not None
        pulls.append(view.pull)
    return pulls


def status_line(app: PulltraceApp) -> str:
    return str(main_screen(app).query_one("#status", Static).render())


async def test_starts_live_with_every_pull_and_active_ones_first() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        shown = rows(app)
        assert len(shown) == len(app.store) > 30
        phases = [p.phase in ACTIVE_PHASES for p in shown]
        assert phases == sorted(phases, reverse=True)
        info = str(main_screen(app).query_one("#info", Static).render())
        assert "LIVE" in info and "demo" in info


async def test_slash_filters_as_you_type_enter_keeps_it_esc_clears_it() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        total = table(app).row_count
        await pilot.press("slash")
        assert main_screen(app).prompt.is_open
        await pilot.press(*"pytorch")
        shown = rows(app)
        assert 0 < len(shown) < total
        assert all("pytorch" in p.image_ref for p in shown)
        await pilot.press("enter")
        assert not main_screen(app).prompt.is_open
        assert table(app).has_focus
        assert main_screen(app).pull_query.text == "pytorch" and table(app).row_count == len(shown)
        assert "pytorch" in str(table(app).border_subtitle)
        await pilot.press("escape")
        assert main_screen(app).pull_query.text == "" and table(app).row_count == total


async def test_esc_while_typing_a_filter_drops_it() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        total = table(app).row_count
        await pilot.press("slash", *"gpu-01")
        assert all(p.node_name == "gpu-01" for p in rows(app))
        await pilot.press("escape")
        assert not main_screen(app).prompt.is_open
        assert table(app).row_count == total


async def test_filter_matches_namespace_and_pod_names() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"monitoring", "enter")
        shown = rows(app)
        assert shown and all(any(p.namespace == "monitoring" for p in s.pods) for s in shown)
        pod = shown[0].pods[0].pod_name
        await pilot.press("slash", *["backspace"] * 10, *pod, "enter")
        assert [p.id for p in rows(app)] == [shown[0].id]


async def command(pilot: Pilot[None], line: str) -> None:
    await pilot.press("colon", *line, "enter")


@pytest.mark.parametrize(
    ("line", "check"),
    [
        ("node gpu-01", lambda p: p.node_name == "gpu-01"),
        ("ns ml", lambda p: any(pod.namespace == "ml" for pod in p.pods)),
        ("failed", lambda p: p.phase == "failed"),
        ("active", lambda p: p.phase in ACTIVE_PHASES),
    ],
)
async def test_scope_commands(line: str, check: object) -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        total = table(app).row_count
        await command(pilot, line)
        shown = rows(app)
        assert 0 < len(shown) < total
        assert all(check(p) for p in shown)  # type: ignore[operator]
        title = str(table(app).border_title)
        assert line.split()[-1] in title
        await command(pilot, "all")
        assert table(app).row_count == total and main_screen(app).pull_query == Query()


async def test_all_also_clears_the_filter_and_scopes_combine() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await command(pilot, "active")
        await command(pilot, "node gpu-02")
        shown = rows(app)
        assert shown and all(p.node_name == "gpu-02" and p.phase == "pulling" for p in shown)
        await pilot.press("slash", *"postgres", "enter")
        await command(pilot, "all")
        assert main_screen(app).pull_query == Query()


async def test_colon_q_quits() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await command(pilot, "q")
        await pilot.pause()
    assert app.return_code == 0 and not app.is_running


async def test_unknown_command_says_so_and_esc_abandons_a_command() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await command(pilot, "frobnicate")
        assert "unknown command :frobnicate" in status_line(app)
        await pilot.press("colon", *"node gpu-01", "escape")
        assert main_screen(app).pull_query == Query() and not main_screen(app).prompt.is_open


async def test_command_bar_completes_node_names() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("colon", *"node gpu-0")
        field = main_screen(app).query_one("#prompt-input", Input)
        await pilot.pause()
        assert field._suggestion == "node gpu-01"
        await pilot.press("right", "enter")
        assert main_screen(app).pull_query.node == "gpu-01"


@pytest.mark.parametrize(
    ("key", "sort"),
    [("N", "node"), ("I", "image"), ("S", "speed"), ("P", "progress"), ("E", "eta"), ("A", "age")],
)
async def test_sort_keys_and_again_to_reverse(key: str, sort: SortKey) -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press(key)
        assert main_screen(app).pull_query.sort == sort and not main_screen(app).pull_query.reverse
        expected = order(app.store.pulls(), Query(sort=sort), NOW)
        assert [p.id for p in rows(app)] == [p.id for p in expected]
        first, second = ("↓", "↑") if sort in ("speed", "progress") else ("↑", "↓")
        assert f"sort:{sort}{first}" in str(table(app).border_subtitle)
        await pilot.press(key)
        assert main_screen(app).pull_query.reverse
        expected = order(app.store.pulls(), Query(sort=sort, reverse=True), NOW)
        assert [p.id for p in rows(app)] == [p.id for p in expected]
        assert f"sort:{sort}{second}" in str(table(app).border_subtitle)


async def test_sorting_keeps_the_cursor_on_its_pull() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("down", "down", "down")
        chosen = table(app).highlighted_pull()
        await pilot.press("S")
        assert table(app).highlighted_pull() == chosen


async def test_cursor_keys_move_the_highlight_and_keep_it_in_view() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        t = table(app)
        page = t.size.height - 1
        last = t.row_count - 1
        assert t.row_count > page, "the demo must not fit on one screen"

        def in_view() -> bool:
            return t.scroll_y <= t.cursor_row < t.scroll_y + page

        await pilot.press("down", "down", "down", "up")
        assert t.cursor_row == 2 and t.highlighted_pull() == t.order[2]
        await pilot.press("pagedown")
        assert t.cursor_row == min(last, 2 + page) and in_view()
        await pilot.press("end")
        assert t.highlighted_pull() == t.order[last] and in_view()
        assert t.scroll_y == t.max_scroll_y
        await pilot.press("down")
        assert t.cursor_row == last
        await pilot.press("pageup")
        assert t.cursor_row == last - page and in_view()
        await pilot.press("home")
        assert t.cursor_row == 0 and t.scroll_y == 0
        await pilot.press("up", "pageup")
        assert t.cursor_row == 0
        await pilot.press("ctrl+end")
        assert t.cursor_row == last
        await pilot.press("ctrl+home")
        assert t.cursor_row == 0


async def test_moving_the_cursor_shows_why_the_highlighted_pull_failed() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        failed = next(i for i, p in enumerate(rows(app)) if p.phase == "failed")
        error = rows(app)[failed].error
        assert error not in status_line(app)
        await pilot.press(*["down"] * failed)
        await pilot.pause()
        assert error in status_line(app)


async def test_click_highlights_a_row_and_a_second_click_opens_it() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        t = table(app)
        # Border, then the header line, then rows: row 2 is four lines down.
        await pilot.click(PullTable, offset=(10, 4))
        assert t.cursor_row == 2 and isinstance(app.screen, MainScreen)
        await pilot.click(PullTable, offset=(10, 1))
        assert t.cursor_row == 2, "the header is not a row"
        await pilot.click(PullTable, offset=(10, 4))
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen) and app.screen.pull_id == t.order[2]


async def test_enter_opens_the_highlighted_pull_and_esc_goes_back() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("down")
        chosen = table(app).highlighted_pull()
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen) and screen.pull_id == chosen
        view = app.store.get(screen.pull_id)
        assert view is not None
        layers = screen.query_one("#layers")
        assert layers.row_count == len(view.pull.layers)  # type: ignore[attr-defined]
        head = str(screen.query_one("#detail-head", Static).render())
        assert view.pull.node_name in head
        pods = str(screen.query_one("#pods", Static).render())
        assert all(p.pod_name in pods for p in view.pull.pods)
        events = str(screen.query_one("#events", Static).render())
        assert "layer.started" in events or "pull.started" in events
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_detail_of_a_failed_pull_shows_why() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await command(pilot, "failed")
        failed = rows(app)[0]
        assert failed.error in status_line(app)
        await pilot.press("enter")
        head = str(app.screen.query_one("#detail-head", Static).render())
        assert failed.error in head


async def test_question_mark_lists_every_key_and_esc_closes_it() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = help_text()
        for key in ("enter", "esc", "/", ":", "?", "q", "N", "I", "S", "P", "E", "A"):
            assert key in text
        for cmd in (":node", ":ns", ":all", ":failed", ":active", ":q"):
            assert cmd in text
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


def help_text() -> str:
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(help_table())
    return console.export_text()


def test_help_lists_every_key_each_view_binds() -> None:
    text = help_text()
    views = (HistoryScreen, SummaryScreen, UpdatesScreen)
    for owner in (PulltraceApp, MainScreen, PullTable, DetailScreen, *views):
        for binding in owner.BINDINGS:
            assert isinstance(binding, Binding)
            assert keys.key_label(binding) in text, binding
            assert (binding.tooltip or binding.description) in text, binding


def test_a_key_added_to_the_table_is_listed_and_hinted(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = Binding("x", "app.bell", "ring", key_display="x", id="main.ring")
    monkeypatch.setattr(keys, "KEYS", (*keys.KEYS, extra))
    assert "x ring" in " ".join(help_text().split())
    assert "<x> ring" in " ".join(hints_text().plain.split())
    assert extra in keys.bound_by("main")


async def test_help_and_quit_from_the_detail_and_help_as_a_command() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, DetailScreen)
        await pilot.press("escape")
        await command(pilot, "help")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "enter", "q")
        await pilot.pause()
    assert not app.is_running


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_quit_keys(key: str) -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press(key)
        await pilot.pause()
    assert not app.is_running


async def test_q_while_typing_a_filter_is_text() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("slash", "q")
        assert app.is_running and main_screen(app).pull_query.text == "q"


async def test_flags_scope_the_view() -> None:
    app = demo_app(namespace="shop")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert rows(app) and all(any(p.namespace == "shop" for p in s.pods) for s in rows(app))
    app = demo_app(node="worker-03")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert rows(app) and all(p.node_name == "worker-03" for p in rows(app))
    app = demo_app(namespace="shop", all_namespaces=True)
    assert app.start_query.namespace == ""


async def test_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = demo_app()
    assert not app.color
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("end")
        await pilot.pause()
        t = table(app)
        assert t.shown.keys() == set(t.order), "every row has been drawn"
        for cells in t.shown.values():
            assert all("#" not in style for cell in cells.values() for _, style in cell)


async def test_usable_at_80_by_24() -> None:
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        t = table(app)
        assert t.lay is not None
        assert [c.key for c in t.lay.columns] == [
            "state",
            "image",
            "node",
            "progress",
            "speed",
            "eta",
            "pods",
        ]
        assert t.virtual_size.width <= t.scrollable_content_region.width
        assert t.scrollable_content_region.height >= 15


class Scripted:
    """A source that says exactly what a test wants and then ends."""

    description = "test"
    context = "kind-test"

    def __init__(self, *messages: Message) -> None:
        self.messages = messages

    async def __aiter__(self) -> AsyncIterator[Message]:
        for message in self.messages:
            yield message


class Held(Scripted):
    """Says what a test wants, then stays connected."""

    async def __aiter__(self) -> AsyncIterator[Message]:
        for message in self.messages:
            yield message
        await asyncio.Event().wait()


async def test_connection_states_reach_the_header() -> None:
    app = PulltraceApp(
        Scripted(
            ConnectionState("live"),
            Snapshot([PullStatus(id="a", node_name="n")]),
            ConnectionState("reconnecting", "collector restarted"),
        ),
        flush_interval=3600.0,
    )
    async with app.run_test() as pilot:
        await pilot.pause()
        app.flush()
        await pilot.pause()
        info = str(main_screen(app).query_one("#info", Static).render())
        assert "OFFLINE" in info and "source ended" in info and "kind-test" in info
        assert app.store.get("a") is not None


async def test_detail_of_a_pull_finished_before_connecting_says_its_layers_were_not_sent() -> None:
    done = PullStatus(id="a", node_name="n", phase="completed", layer_count=3, layers_done=3)
    app = PulltraceApp(Scripted(ConnectionState("live"), Snapshot([done])), flush_interval=3600.0)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.flush()
        await pilot.pause()
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen) and screen.pull_id == "a"
        assert not screen.query_one("#layers").display
        note = screen.query_one("#layers-note", Static)
        assert note.display and "not sent" in str(note.render())


async def test_reconnecting_is_shown() -> None:
    class Stuck(Scripted):
        async def __aiter__(self) -> AsyncIterator[Message]:
            yield ConnectionState("reconnecting", "retry in 2s")
            await asyncio.Event().wait()

    app = PulltraceApp(Stuck(), flush_interval=3600.0)
    async with app.run_test() as pilot:
        await pilot.pause()
        app.flush()
        await pilot.pause()
        info = str(main_screen(app).query_one("#info", Static).render())
        assert "RECONNECTING" in info and "retry in 2s" in info


async def test_the_header_counts_nodes_and_highlights_degraded_ones() -> None:
    ready = NodeStatus(node_name="a", state="ready")
    bad = NodeStatus(node_name="b", state="degraded", containerd_reachable=False, error="gone")
    gone = NodeStatus(node_name="c", state="stale")

    app = PulltraceApp(
        Held(ConnectionState("live"), Snapshot([], nodes=[ready, bad, gone])),
        flush_interval=3600.0,
    )
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        app.flush()
        await pilot.pause()
        window = main_screen(app).header._shown["#window"]
        assert window.plain.startswith("nodes 3 · 1 degraded · 1 stale  throughput, last")
        degraded = next(s for s in window.spans if window.plain[s.start : s.end] == "1 degraded")
        assert "#ffd75f" in str(degraded.style)
        app.inbox.append(NodeUpdate(NodeStatus(node_name="b", state="ready")))
        app.inbox.append(NodeUpdate(gone, removed=True))
        app.flush()
        await pilot.pause()
        window = main_screen(app).header._shown["#window"]
        assert window.plain.startswith("nodes 2  throughput, last")


async def test_a_source_without_agents_shows_no_node_count() -> None:
    app = PulltraceApp(Scripted(ConnectionState("live"), Snapshot([])), flush_interval=3600.0)
    async with app.run_test() as pilot:
        await pilot.pause()
        app.flush()
        await pilot.pause()
        assert main_screen(app).header._shown["#window"].plain.startswith("throughput, last")


ESCAPES = "\x1b]0;owned\x07\x1b[2J\r\x00\x9b31m\u202e"
MARKUP = "[bold red]x[/][link=https://evil.example]y[/link]"


def hostile_pull(pull_id: str, ref: str) -> PullStatus:
    from pulltrace.model import LayerStatus, PodRef

    return PullStatus(
        id=pull_id,
        node_name=f"node{ESCAPES}",
        image_ref=ref,
        phase="failed",
        total_bytes=1000,
        downloaded_bytes=400,
        percent=40.0,
        error=f"aborted{ESCAPES}{MARKUP}" + "e" * 5000,
        pods=[PodRef(namespace=f"ns{ESCAPES}", pod_name=f"pod{ESCAPES}{MARKUP}", container="c")],
        layers=[LayerStatus(digest=f"sha256:{ESCAPES}", media_type=MARKUP, total_bytes=1000)],
        layer_count=1,
        total_known=True,
    )


def screen_text(app: PulltraceApp) -> str:
    """Every character the screen would draw, as the terminal would get it."""
    console = Console(width=app.size.width, height=app.size.height, file=io.StringIO(), record=True)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text(styles=False)


async def test_hostile_strings_reach_the_screen_escaped_and_cut() -> None:
    """Controls in what the source says are shown as escapes, markup as text, and a 900 KB
    reference in its column; none of them moves or restyles the screen."""
    huge = "ghcr.io/acme/" + "a" * 900_000 + ":v1"
    pulls = [
        hostile_pull(f"{MARKUP}1", f"ghcr.io/acme/app{ESCAPES}:v1"),
        hostile_pull(f"{MARKUP}2", huge),
    ]

    app = PulltraceApp(
        Held(ConnectionState("live"), Snapshot(pulls), ConnectionState("offline", ESCAPES)),
        flush_interval=3600.0,
    )
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause()
        app.flush()
        await pilot.pause()
        t = table(app)
        assert t.lay is not None and t.row_count == 2
        for pull_id in t.order:
            strip = row_strip(t.lay, t.shown[pull_id], Style())
            assert strip.cell_length == table_width(t.lay), "every cell kept to its column"
            assert [c for c in strip.text if not c.isprintable()] == []
        text = screen_text(app)
        assert [c for c in text if not (c.isprintable() or c == "\n")] == []
        assert "app\\x1b]0;owned\\x07\\x1b[2J\\r\\x00\\x9b31m" in text
        assert "aaaa…  node\\x1b]0;ow…" in text
        assert "OFFLINE \\x1b]0;owned\\x07" in text
        assert f"✗ aborted\\x1b]0;owned\\x07\\x1b[2J\\r\\x00\\x9b31m\\u202e{MARKUP}" in text
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        text = screen_text(app)
        assert [c for c in text if not (c.isprintable() or c == "\n")] == []
        assert f"pull {MARKUP}" in text, "the id is shown as text, not read as markup"
        assert "  on node\\x1b]0;owned\\x07\\x1b[2J\\r\\x00\\x9b31m\\u202e  failed" in text
        assert "ns\\x1b]0;owned\\x07\\x1b[2J\\r\\x00\\x9b31m\\u202e/pod\\x1b]0;owned" in text
