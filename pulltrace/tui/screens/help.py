"""Every key, in one place, as k9s's ``?`` shows them: drawn from the key table, so it cannot
fall behind the bindings."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from pulltrace.tui import keys

AFTER_SORT = ("again", "reverse")
"""Not a key of its own: pressing a sort key a second time reverses the order."""
STACKED = frozenset({keys.UPDATES.description.upper()})
"""Short sections drawn under the one before rather than beside it: the box is 78 wide."""
COMMANDS = (
    "COMMANDS",
    [
        (":node NAME", "one node"),
        (":ns NAME", "one namespace"),
        (":active", "pulling only"),
        (":failed", "failed only"),
        (":all", "everything"),
        (":history", "past pulls"),
        (":updates", "image updates"),
        (":q", "quit"),
    ],
)
NOTE = (
    "/ matches image, node, namespace and pod names. Pulls are node-wide: -n and :ns keep "
    "those that pods of the namespace wait on, -A shows all. Finished pulls stay, dimmed, "
    "for the collector's history."
)


def help_table() -> Table:
    sections = keys.help_sections()
    for title, rows in sections:
        if title == keys.SORT.description.upper():
            rows.append(AFTER_SORT)
    grid = Table.grid(padding=(0, 2))
    columns: list[Text] = []
    for title, rows in [*sections, COMMANDS]:
        width = max(len(key) for key, _ in rows) + 1
        section = Text(no_wrap=True, end="")
        section.append(title, style="bold #ffaf00")
        for key, label in rows:
            section.append(f"\n{key:<{width}}", style="bold #ff87d7")
            section.append(label, style="#d0d0d0")
        if title in STACKED and columns:
            columns[-1].append("\n\n")
            columns[-1].append_text(section)
        else:
            grid.add_column()
            columns.append(section)
    grid.add_row(*columns)
    return grid


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = keys.bound_by("help")

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box") as box:
            box.border_title = " help "
            box.border_subtitle = " esc to close "
            yield Static(help_table(), id="help-keys")
            yield Static(Text(NOTE, style="#8a8f98"), id="help-note")
