"""The tag prompt of ``:updates``: the existing tags to pick from, narrowed as you type; Enter
on a name that no tag has creates it. "no tag" untags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from pulltrace import render
from pulltrace.model import TAG_NAME_MAX, Tag
from pulltrace.tui import keys

NO_TAG = "none"
"""The option id that untags (tag ids are numbers)."""


@dataclass(frozen=True)
class TagChoice:
    """An existing tag (``tag_id``, ``name``), a new one to create (``new_name``), or none
    (all empty: untag)."""

    tag_id: int | None = None
    name: str = ""
    new_name: str = ""


class TagScreen(ModalScreen[TagChoice | None]):
    BINDINGS: ClassVar[list[BindingType]] = keys.bound_by("tags")

    def __init__(self, image: str, tags: list[Tag]) -> None:
        super().__init__()
        self.image = image
        self.tags = sorted(tags, key=lambda t: t.name.casefold())

    def compose(self) -> ComposeResult:
        with Vertical(id="tags-box") as box:
            box.border_title = " tag "
            box.border_subtitle = " enter to pick or create · esc to cancel "
            label = Text("tag for ", style="#8a8f98", end="")
            label.append(render.printable(self.image, render.REF_MAX), style="bold")
            yield Static(label, id="tags-image")
            yield Input(
                placeholder="a tag, or a new name", max_length=TAG_NAME_MAX, id="tags-input"
            )
            yield OptionList(id="tags-list")

    def on_mount(self) -> None:
        self.narrow("")
        self.query_one("#tags-input", Input).focus()

    def narrow(self, typed: str) -> None:
        """The tags whose name holds what is typed, then "no tag"."""
        options = self.query_one("#tags-list", OptionList)
        options.clear_options()
        needle = typed.strip().casefold()
        for tag in self.tags:
            if needle in tag.name.casefold():
                options.add_option(Option(render.printable(tag.name), id=str(tag.id)))
        options.add_option(Option(Text("no tag", style="italic #8a8f98"), id=NO_TAG))
        options.highlighted = 0

    @on(Input.Changed, "#tags-input")
    def typed(self, event: Input.Changed) -> None:
        self.narrow(event.value)

    @on(Input.Submitted, "#tags-input")
    def submitted(self, event: Input.Submitted) -> None:
        """An exact name picks its tag; another creates one; nothing typed takes the
        highlighted option."""
        name = event.value.strip()
        if not name:
            options = self.query_one("#tags-list", OptionList)
            if options.highlighted is not None:
                self.pick(options.get_option_at_index(options.highlighted).id)
            return
        for tag in self.tags:
            if tag.name.casefold() == name.casefold():
                self.dismiss(TagChoice(tag_id=tag.id, name=tag.name))
                return
        self.dismiss(TagChoice(new_name=name))

    @on(OptionList.OptionSelected, "#tags-list")
    def selected(self, event: OptionList.OptionSelected) -> None:
        self.pick(event.option.id)

    def pick(self, option_id: str | None) -> None:
        tag = next((t for t in self.tags if str(t.id) == option_id), None)
        self.dismiss(TagChoice(tag_id=tag.id, name=tag.name) if tag else TagChoice())

    def action_cancel(self) -> None:
        self.dismiss(None)
