"""``:updates``: the images DIUN says have a newer version, grouped by tag (untagged last).
``d`` dismisses (acknowledges) the highlighted one, ``t`` puts it under a tag, ``a`` shows the
dismissed ones too. Every call to the collector runs in a worker thread; after a change the
view reads the list again and tells the app, whose badges then follow."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Static

from pulltrace import render
from pulltrace.model import ImageUpdate, Tag
from pulltrace.tui import keys
from pulltrace.tui.messages import UpdatesEdited
from pulltrace.tui.screens.tags import TagChoice, TagScreen

if TYPE_CHECKING:
    from pulltrace.client.endpoint import Endpoint
    from pulltrace.client.history import HistoryClient

COLUMNS = (
    ("tag", "TAG", 14),
    ("state", " ", 1),
    ("image", "IMAGE", 48),
    ("status", "STATUS", 7),
    ("created", "CREATED", 11),
    ("received", "RECEIVED", 11),
    ("platform", "PLATFORM", 12),
)
UNTAGGED = "untagged"


def grouped(updates: list[ImageUpdate], everything: bool) -> list[ImageUpdate]:
    """By tag name, untagged last, images in order within a tag; dismissed ones only when
    asked for."""
    shown = [u for u in updates if everything or not u.acknowledged]
    return sorted(
        shown, key=lambda u: (u.tag is None, u.tag.name.casefold() if u.tag else "", u.image)
    )


def day_text(u: ImageUpdate, which: str) -> str:
    moment = u.created if which == "created" else u.received_at
    return moment.astimezone().strftime("%m-%d %H:%M") if moment else "-"


def update_cells(u: ImageUpdate, group: str, color: bool) -> tuple[Text, ...]:
    """``group`` is the tag's label on the first row of its group, empty on the others."""
    p = render.palette(color)
    registry, repo, tag = render.split_image(render.printable(u.image, render.REF_MAX))
    glyph = ("✓", p.muted) if u.acknowledged else ("↑", p.warn)
    return (
        Text(group, style=p.muted if group.startswith(UNTAGGED) else "bold #ff87d7"),
        Text(*glyph),
        Text.assemble((f"{registry}/" if registry else "", p.muted), repo, (tag, p.accent)),
        Text(render.printable(u.status, 32), style=p.muted if u.acknowledged else ""),
        Text(day_text(u, "created"), style=p.muted),
        Text(day_text(u, "received"), style=p.muted),
        Text(render.printable(u.platform, 32), style=p.muted),
    )


class UpdatesScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = keys.bound_by("updates")

    def __init__(self, endpoint: Endpoint, *, color: bool) -> None:
        super().__init__(id="updates")
        self.endpoint = endpoint
        self.color = color
        self.updates: list[ImageUpdate] = []
        self.rows: list[ImageUpdate] = []
        self.everything = False
        self.loads = 0
        """Answers (or errors) shown so far: tests and the user wait on the next one."""

    def compose(self) -> ComposeResult:
        with Vertical(id="updates-box") as box:
            box.border_title = Text(" updates ", style="bold #5fd7ff")
            yield DataTable[Text](id="updates-table", cursor_type="row", cell_padding=1)
        yield Static(id="updates-status")

    def on_mount(self) -> None:
        table: DataTable[Text] = self.query_one("#updates-table", DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, width=width, key=key)
        table.focus()
        self.status("loading…")
        self.call(None, "")

    # --- the collector, in threads ---------------------------------------------------------

    def client(self) -> HistoryClient:
        from pulltrace.client.history import HistoryClient

        return HistoryClient(self.endpoint)

    @work(thread=True, exclusive=True, group="updates-view", exit_on_error=False)
    def call(self, change: Callable[[HistoryClient], None] | None, done: str) -> None:
        """Runs ``change(client)`` (a dismissal, a tag), then reads the list again; ``done`` is
        the line shown after it."""
        from pulltrace.errors import PulltraceError

        client = self.client()
        try:
            if change is not None:
                change(client)
            updates = client.updates().updates
        except PulltraceError as err:
            self.app.call_from_thread(self.failed, str(err))
            return
        self.app.call_from_thread(self.show, updates, done, bool(done))

    @work(thread=True, exclusive=True, group="updates-tags", exit_on_error=False)
    def pick_tag(self, image: str) -> None:
        """Reads the tags, then asks which one (or a new name) in the tag prompt."""
        from pulltrace.errors import PulltraceError

        try:
            tags = self.client().tags().tags
        except PulltraceError as err:
            self.app.call_from_thread(self.failed, str(err))
            return
        self.app.call_from_thread(self._ask_tag, image, tags)

    def _ask_tag(self, image: str, tags: list[Tag]) -> None:
        def chosen(choice: TagChoice | None) -> None:
            if choice is not None:
                self.assign(image, choice)

        self.app.push_screen(TagScreen(image, tags), chosen)

    def assign(self, image: str, choice: TagChoice) -> None:
        def change(client: HistoryClient) -> None:
            tag_id = choice.tag_id
            if choice.new_name:
                tag_id = client.create_tag(choice.new_name).id
            client.set_tag(image, tag_id)

        label = choice.new_name or choice.name
        what = f"tagged {label}" if label else "untagged"
        self.call(change, f"{what}: {render.printable(image, render.REF_MAX)}")

    # --- drawing ---------------------------------------------------------------------------

    def failed(self, error: str) -> None:
        self.loads += 1
        self.status(f"✗ {render.message_text(error)}", render.palette(self.color).bad)

    def show(self, updates: list[ImageUpdate], done: str, changed: bool) -> None:
        self.loads += 1
        self.updates = updates
        self.redraw()
        self.status(done)
        if changed:
            self.post_message(UpdatesEdited())

    def redraw(self) -> None:
        table: DataTable[Text] = self.query_one("#updates-table", DataTable)
        row = table.cursor_row
        table.clear()
        self.rows = grouped(self.updates, self.everything)
        last = None
        counts: dict[str | None, int] = {}
        for u in self.rows:
            name = u.tag.name if u.tag else None
            counts[name] = counts.get(name, 0) + 1
        for n, u in enumerate(self.rows):
            name = u.tag.name if u.tag else None
            label = ""
            if n == 0 or name != last:
                label = f"{render.printable(name, 10) if name else UNTAGGED} ({counts[name]})"
            last = name
            table.add_row(*update_cells(u, label, self.color), key=str(n))
        if self.rows:
            table.move_cursor(row=min(row, len(self.rows) - 1))
        pending = sum(1 for u in self.updates if not u.acknowledged)
        shown = "all" if self.everything else "pending"
        box = self.query_one("#updates-box")
        box.border_subtitle = (
            f" {pending} pending, {len(self.updates) - pending} dismissed · {shown} "
        )

    def status(self, message: str, style: str = "") -> None:
        text = Text(no_wrap=True, end="")
        text.append(" <pulls> ", style="bold #000000 on #5fd7ff")
        text.append(" <updates> ", style="bold #000000 on #ffaf00")
        for key, what in keys.screen_hints("updates"):
            text.append(f" <{key}>", style="bold #ff87d7")
            text.append(f" {what}", style="#8a8f98")
        if not message and not self.rows and self.loads:
            message = "no updates" + ("" if self.everything else " pending (a: show dismissed)")
        if message:
            text.append(f"  {message}", style=style or "#ffd75f")
        self.query_one("#updates-status", Static).update(text)

    def highlighted(self) -> ImageUpdate | None:
        table: DataTable[Text] = self.query_one("#updates-table", DataTable)
        row = table.cursor_row
        return self.rows[row] if 0 <= row < len(self.rows) else None

    # --- keys ------------------------------------------------------------------------------

    def action_dismiss_update(self) -> None:
        update = self.highlighted()
        if update is None or update.acknowledged:
            return
        image = update.image
        self.call(
            lambda client: client.dismiss(image),
            f"dismissed {render.printable(image, render.REF_MAX)}",
        )

    def action_tag_update(self) -> None:
        update = self.highlighted()
        if update is not None:
            self.pick_tag(update.image)

    def action_toggle_acknowledged(self) -> None:
        self.everything = not self.everything
        self.redraw()
        self.status("")
