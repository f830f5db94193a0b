"""``:history``, ``:updates`` and their keys, the update badge and the ETA from history, driven
through Pilot against a real collector with a history (see ``history_endpoint``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from textual.widgets import DataTable, Input, OptionList, Static

from pulltrace import render
from pulltrace.client.endpoint import Endpoint
from pulltrace.client.history import HistoryClient
from pulltrace.client.source import ConnectionState, Snapshot
from pulltrace.model import PullStatus
from pulltrace.tui.app import PulltraceApp
from pulltrace.tui.columns import BADGE
from pulltrace.tui.history import image_key
from pulltrace.tui.screens.detail import DetailScreen
from pulltrace.tui.screens.history import HistoryScreen
from pulltrace.tui.screens.summary import SummaryScreen
from pulltrace.tui.screens.tags import TagScreen
from pulltrace.tui.screens.updates import UpdatesScreen
from pulltrace.tui.widgets.pull_table import PullTable
from tests.collector.conftest import FAST, start
from tests.tui.conftest import (
    START,
    WARMUP,
    demo_app,
    facts_loaded,
    history_app,
    main_screen,
    settle,
)
from tests.tui.test_app import Held

NOW = datetime.fromtimestamp(START + WARMUP, UTC)
NGINX = "docker.io/library/nginx"


def status(app: PulltraceApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def image_cells(app: PulltraceApp) -> dict[str, str]:
    """Each pull's image cell, as drawn, by pull id (every row, seen or not)."""
    table = main_screen(app).query_one(PullTable)
    out = {}
    for pull_id in table.order:
        table.refresh_row(pull_id)
        out[pull_id] = render.plain(table.shown[pull_id]["image"])
    return out


async def command(pilot: object, line: str) -> None:
    await pilot.press("colon", *line, "enter")  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]


async def test_history_lists_finished_pulls_newest_first_within_the_scope(
    history_endpoint: Endpoint,
) -> None:
    app = history_app(history_endpoint)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await command(pilot, "node gpu-01")
        await command(pilot, "history")
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        while not screen.loaded:
            await pilot.pause()
        assert screen.pulls and all(p.node_name == "gpu-01" for p in screen.pulls)
        finished = [p.completed_at for p in screen.pulls]
        assert finished == sorted(finished, reverse=True)  # type: ignore[type-var]
        table = screen.query_one(DataTable)
        assert table.row_count == len(screen.pulls)
        first = [str(c) for c in table.get_row_at(0)]
        assert first[1] == "gpu-01" and first[3].endswith(screen.pulls[0].phase)
        assert first[4] == render.duration_text(screen.pulls[0].duration_seconds)
        await pilot.press("down", "enter")
        assert isinstance(app.screen, SummaryScreen) and app.screen.pull == screen.pulls[1]
        await pilot.press("escape")
        assert app.screen is screen
        await pilot.press("escape")
        assert app.screen is main_screen(app)


async def test_history_applies_the_filter_as_an_image_match(history_endpoint: Endpoint) -> None:
    app = history_app(history_endpoint)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"redis", "enter")
        await command(pilot, "history")
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        while not screen.loaded:
            await pilot.pause()
        assert screen.pulls and all("redis" in p.image_ref for p in screen.pulls)


async def test_without_a_collector_the_views_say_so_in_one_line() -> None:
    app = demo_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        for view in ("history", "updates"):
            await command(pilot, view)
            assert app.screen is main_screen(app)
            line = status(app, "#status")
            assert f":{view} needs a collector" in line
        assert not any(BADGE in cell for cell in image_cells(app).values())


async def test_rows_of_images_with_a_pending_update_carry_the_badge(
    history_endpoint: Endpoint,
) -> None:
    updated = {image_key(u.image)[0] for u in HistoryClient(history_endpoint).updates().updates}
    assert updated == {NGINX, "docker.io/library/redis"}
    app = history_app(history_endpoint)
    async with app.run_test(size=(160, 60)) as pilot:
        await settle(pilot)
        await facts_loaded(pilot)
        cells = image_cells(app)
        for pull in app.store.pulls():
            badged = cells[pull.id].endswith(BADGE)
            assert badged == (image_key(pull.image_ref)[0] in updated), pull.image_ref
        assert sum(cell.endswith(BADGE) for cell in cells.values()) >= 2


async def test_updates_groups_dismisses_tags_and_toggles(history_endpoint: Endpoint) -> None:
    client = HistoryClient(history_endpoint)
    ml = client.create_tag("ml")
    app = history_app(history_endpoint)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await facts_loaded(pilot)
        await command(pilot, "updates")
        screen = app.screen
        assert isinstance(screen, UpdatesScreen)
        while not screen.loads:
            await pilot.pause()
        assert [u.image for u in screen.rows] == sorted(u.image for u in screen.rows)
        assert len(screen.rows) == 2 and all(u.tag is None for u in screen.rows)

        # t: the prompt lists the tags; picking one files the update under it, first.
        second = screen.rows[1].image
        await pilot.press("down", "t")
        while not isinstance(app.screen, TagScreen):
            await pilot.pause()
        options = app.screen.query_one(OptionList)
        assert [str(options.get_option_at_index(i).prompt) for i in range(2)] == ["ml", "no tag"]
        loads = screen.loads
        await pilot.press("enter")
        while screen.loads == loads:
            await pilot.pause()
        assert screen.rows[0].image == second and screen.rows[0].tag == ml
        assert "ml (1)" in str(screen.query_one(DataTable).get_row_at(0)[0])

        # t, then a new name: the tag is created and assigned.
        await pilot.press("down", "t")
        while not isinstance(app.screen, TagScreen):
            await pilot.pause()
        loads = screen.loads
        await pilot.press(*"prod", "enter")
        while screen.loads == loads:
            await pilot.pause()
        tags = {t.name: t for t in client.tags().tags}
        assert set(tags) == {"ml", "prod"}
        assert {u.image: u.tag.name for u in client.updates().updates if u.tag} == {
            second: "ml",
            screen.rows[1].image: "prod",
        }

        # d: dismissed on the collector, gone from the pending list, and the badge goes too.
        highlighted = screen.highlighted()
        assert highlighted is not None
        dismissed = highlighted.image
        before = sum(c.endswith(BADGE) for c in image_cells(app).values())
        loads = screen.loads
        await pilot.press("d")
        while screen.loads == loads:
            await pilot.pause()
        assert len(screen.rows) == 1 and screen.rows[0].image != dismissed
        assert {u.image: u.acknowledged for u in client.updates().updates}[dismissed]
        while sum(c.endswith(BADGE) for c in image_cells(app).values()) == before:
            await pilot.pause()
        repo = image_key(dismissed)[0]
        cells = image_cells(app)
        assert all(
            not cells[p.id].endswith(BADGE)
            for p in app.store.pulls()
            if image_key(p.image_ref)[0] == repo
        )

        # a: the dismissed one is back in view, marked; a again hides it.
        await pilot.press("a")
        assert dismissed in (u.image for u in screen.rows)
        await pilot.press("a")
        assert dismissed not in (u.image for u in screen.rows)
        await pilot.press("escape")
        assert app.screen is main_screen(app)


async def test_the_tag_prompt_cancels_on_escape(history_endpoint: Endpoint) -> None:
    app = history_app(history_endpoint)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await command(pilot, "updates")
        screen = app.screen
        assert isinstance(screen, UpdatesScreen)
        while not screen.loads:
            await pilot.pause()
        await pilot.press("t")
        while not isinstance(app.screen, TagScreen):
            await pilot.pause()
        assert app.screen.query_one(Input).has_focus
        await pilot.press("escape")
        assert app.screen is screen
        assert not HistoryClient(history_endpoint).tags().tags


def waiting(pull_id: str, repo: str, phase: str, started: datetime) -> PullStatus:
    """A pull before its bytes flow: resolving (only its repository known), or pulling at no
    measured speed yet."""
    return PullStatus(
        id=pull_id,
        node_name="worker-01",
        image_ref=f"{repo}:latest" if phase == "pulling" else "",
        repository=repo,
        phase=phase,  # type: ignore[arg-type]
        started_at=started,
    )


async def test_a_pull_before_bytes_flow_gets_an_eta_from_history(
    history_endpoint: Endpoint,
) -> None:
    stats = HistoryClient(history_endpoint).stats(by="repository").groups
    group = max(stats, key=lambda g: g.duration_seconds.p50)  # pytorch's minutes
    repo, p50 = group.key, group.duration_seconds.p50
    assert p50 > 60
    pulls = [
        waiting("resolving", repo, "resolving", NOW - timedelta(seconds=5)),
        waiting("no-speed", repo, "pulling", NOW - timedelta(seconds=10)),
        waiting("overdue", repo, "pulling", NOW - timedelta(seconds=p50 + 1)),
        waiting("unknown", "example.com/never/pulled", "resolving", NOW),
    ]
    source = Held(ConnectionState("live"), Snapshot(pulls))
    app = history_app(history_endpoint, source)
    async with app.run_test(size=(140, 30)) as pilot:
        await pilot.pause()
        app.flush()
        await facts_loaded(pilot)
        table = main_screen(app).query_one(PullTable)
        eta = {}
        for pull_id in table.order:
            table.refresh_row(pull_id)
            eta[pull_id] = render.plain(table.shown[pull_id]["eta"])
        assert eta["resolving"] == "~" + render.duration_text(p50 - 5)
        assert eta["no-speed"] == "~" + render.duration_text(p50 - 10)
        assert eta["overdue"] == "+" + render.duration_text(p50 + 1)  # no estimate past it
        assert eta["unknown"] == "+0s"

        table.move_cursor(table.order.index("overdue"))
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        head = str(screen.query_one("#detail-head", Static).render())
        assert "ETA +" in head  # overdue: its own elapsed time
        await pilot.press("escape")
        table.move_cursor(table.order.index("resolving"))
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        head = str(screen.query_one("#detail-head", Static).render())
        assert render.history_eta_text(p50 - 5, group.count) in head
        assert f"(p50 of {group.count} pulls)" in head
        line = str(screen.query_one("#detail-history", Static).render())
        q = group.duration_seconds
        assert render.history_stats_text(group.count, group.failures, q.p50, q.p95) in line
        assert repo in line
        await pilot.press("escape")
        table.move_cursor(table.order.index("unknown"))
        await pilot.press("enter")
        line = str(app.screen.query_one("#detail-history", Static).render())
        assert "no earlier pulls of this repository" in line


async def test_without_a_collector_the_detail_has_no_history_line() -> None:
    app = demo_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        assert not screen.query_one("#detail-history", Static).display


async def test_a_collector_without_history_says_so_in_the_view() -> None:
    running = start(FAST)  # no --data-dir, no --database
    try:
        endpoint = Endpoint(running.url)
        app = history_app(endpoint)
        async with app.run_test(size=(120, 30)) as pilot:
            await settle(pilot)
            await facts_loaded(pilot)
            assert "keeps no history" in app.facts.error
            assert not any(BADGE in cell for cell in image_cells(app).values())
            await command(pilot, "history")
            screen = app.screen
            assert isinstance(screen, HistoryScreen)
            while not screen.loaded:
                await pilot.pause()
            assert "the collector keeps no history" in status(app, "#history-status")
            assert screen.query_one(DataTable).row_count == 0
            await pilot.press("escape")
            await pilot.press("enter")
            line = str(app.screen.query_one("#detail-history", Static).render())
            assert "keeps no history" in line
    finally:
        running.stop()


def post_notice(endpoint: Endpoint, **fields: str) -> None:
    """What DIUN posts, over a real socket."""
    reply = httpx.post(endpoint.url("/api/v1/webhooks/diun"), json=fields, timeout=10)
    assert reply.status_code == 204, reply.text


async def test_badges_follow_new_notices_at_the_next_period(history_endpoint: Endpoint) -> None:
    checkout = "ghcr.io/acme/checkout-api"
    app = history_app(history_endpoint)
    app.history_interval = 0.05
    async with app.run_test(size=(160, 60)) as pilot:
        await settle(pilot)
        await facts_loaded(pilot)
        rows = [p.id for p in app.store.pulls() if p.repository == checkout]
        assert rows and not any(image_cells(app)[r].endswith(BADGE) for r in rows)
        post_notice(history_endpoint, image=f"{checkout}:v2.14.1", status="update")
        while not all(image_cells(app)[r].endswith(BADGE) for r in rows):
            await pilot.pause()


async def test_hostile_notice_fields_reach_the_view_escaped(history_endpoint: Endpoint) -> None:
    hostile = "\x1b]0;owned\x07\x1b[2J\u202eevil\r"
    post_notice(
        history_endpoint,
        image="docker.io/library/postgres:16.4",
        status=hostile,
        platform=hostile,
    )
    app = history_app(history_endpoint)
    async with app.run_test(size=(140, 30)) as pilot:
        await settle(pilot)
        await command(pilot, "updates")
        screen = app.screen
        assert isinstance(screen, UpdatesScreen)
        while not screen.loads:
            await pilot.pause()
        table = screen.query_one(DataTable)
        cells = [str(c) for row in range(table.row_count) for c in table.get_row_at(row)]
        assert any("\\x1b" in c for c in cells)
        assert all(c.isprintable() for c in cells)
