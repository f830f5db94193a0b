"""The ``/`` filter and ``:`` command line, shown above the table as in k9s."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.suggester import Suggester
from textual.widgets import Input, Label

COMMANDS = ("node ", "ns ", "all", "failed", "active", "history", "updates", "q")


class CommandSuggester(Suggester):
    """Completes command names, then node and namespace names from what is on screen, so that
    ``:node`` never needs a node name typed out in full."""

    def __init__(self, names: Callable[[str], Iterable[str]]) -> None:
        super().__init__(use_cache=False, case_sensitive=False)
        self._names = names

    async def get_suggestion(self, value: str) -> str | None:
        verb, sep, arg = value.partition(" ")
        if not sep:
            return next((c.rstrip() for c in COMMANDS if c.startswith(verb) and c != verb), None)
        for name in sorted(self._names(verb)):
            if name.casefold().startswith(arg):
                return f"{verb} {name}"
        return None


class Prompt(Horizontal):
    """Hidden until ``/`` or ``:``; the mode decides what Enter does."""

    def __init__(self, names: Callable[[str], Iterable[str]]) -> None:
        super().__init__(id="prompt")
        self.mode = ""
        self._names = names

    def compose(self) -> ComposeResult:
        yield Label("", id="prompt-mode")
        yield Input(id="prompt-input", suggester=CommandSuggester(self._names))

    def open(self, mode: str, value: str = "") -> None:
        self.mode = mode
        self.query_one("#prompt-mode", Label).update(f" {mode}")
        field = self.query_one("#prompt-input", Input)
        field.value = value
        field.suggester = CommandSuggester(self._names) if mode == ":" else None
        self.add_class("-open")
        field.focus()

    def close(self) -> None:
        self.mode = ""
        self.remove_class("-open")

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")
