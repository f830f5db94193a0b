"""Every key of ``watch``, in one table, as k9s keeps its key actions.

Each binding's ``id`` names the class that binds it (``app``, ``main``, ``table``, ``detail``,
``help``), so every class takes its ``BINDINGS`` from here, and the help screen and the header's
hints are drawn from the same rows, in this order: a key added here is bound, listed and hinted
at once.

- ``description``: what the key does, as the header hints it; ``tooltip``, when set, is the
  longer wording the help screen uses instead.
- ``show``: whether the header hints it. Keys of one ``group`` are hinted together under the
  group's description (``<N I S> sort``) and listed in a help section of their own.
- Neighbouring rows that do the same are listed on one help line (``q ctrl+c``), and one key
  bound on two screens gets both meanings (``esc``).
"""

from __future__ import annotations

from textual.binding import Binding, BindingType

SORT = Binding.Group("sort")
UPDATES = Binding.Group("updates")
HEADER_OWNERS = frozenset({"app", "main", "table"})
"""Whose keys the main screen's header hints; the other views hint their own in their status
line (``screen_hints``)."""

SORTS = (
    ("N", "node", "node"),
    ("I", "image", "image"),
    ("S", "speed", "speed"),
    ("P", "progress", "progress"),
    ("E", "eta", "ETA"),
    ("A", "age", "age"),
)
SORTS_HINTED = "NIS"
"""The header has room for three sort keys; ``?`` lists them all."""

KEYS: tuple[Binding, ...] = (
    Binding("colon", "command", "command", key_display=":", id="main.command"),
    Binding("slash", "filter", "filter", key_display="/", id="main.filter"),
    Binding(
        "enter", "select", "detail", key_display="enter", tooltip="pull detail", id="table.select"
    ),
    *(
        Binding(
            key,
            f"sort('{name}')",
            label,
            show=key in SORTS_HINTED,
            group=SORT,
            id=f"main.sort_{name}",
        )
        for key, name, label in SORTS
    ),
    Binding("question_mark", "help", "help", key_display="?", id="app.help"),
    Binding("q", "quit", "quit", id="app.quit"),
    Binding("ctrl+c", "quit", "quit", show=False, priority=True, id="app.interrupt"),
    Binding("escape", "app.pop_screen", "back", key_display="esc", show=False, id="detail.back"),
    Binding("escape", "escape", "clear filter", key_display="esc", show=False, id="main.escape"),
    Binding("up", "cursor_up", "up", key_display="↑", show=False, tooltip="move", id="table.up"),
    Binding(
        "down", "cursor_down", "down", key_display="↓", show=False, tooltip="move", id="table.down"
    ),
    Binding(
        "pageup",
        "page_up",
        "page up",
        key_display="pgup",
        show=False,
        tooltip="move",
        id="table.page_up",
    ),
    Binding(
        "pagedown",
        "page_down",
        "page down",
        key_display="pgdn",
        show=False,
        tooltip="move",
        id="table.page_down",
    ),
    Binding(
        "home,ctrl+home",
        "first",
        "first",
        key_display="home",
        show=False,
        tooltip="first, last",
        id="table.first",
    ),
    Binding(
        "end,ctrl+end",
        "last",
        "last",
        key_display="end",
        show=False,
        tooltip="first, last",
        id="table.last",
    ),
    # :history and :updates, and the tag prompt of :updates.
    Binding("enter", "summary", "summary", show=False, tooltip="pull detail", id="history.summary"),
    Binding("escape", "app.pop_screen", "back", key_display="esc", id="history.back"),
    Binding(
        "escape,enter", "app.pop_screen", "back", key_display="esc", show=False, id="summary.back"
    ),
    Binding(
        "d",
        "dismiss_update",
        "dismiss",
        group=UPDATES,
        id="updates.dismiss",
    ),
    Binding("t", "tag_update", "tag", group=UPDATES, id="updates.tag"),
    Binding(
        "a",
        "toggle_acknowledged",
        "show all",
        group=UPDATES,
        id="updates.all",
    ),
    Binding("escape", "app.pop_screen", "back", key_display="esc", id="updates.back"),
    Binding("escape", "cancel", "cancel", key_display="esc", show=False, id="tags.cancel"),
    # The help screen is modal, so the app's keys do not reach it: it closes on esc or ? again.
    Binding("escape,question_mark", "app.pop_screen", "back", show=False, id="help.back"),
    Binding("q", "app.quit", "quit", show=False, id="help.quit"),
)


def bound_by(owner: str) -> list[BindingType]:
    """The ``BINDINGS`` of one class."""
    return [b for b in KEYS if _owner(b) == owner]


def key_label(binding: Binding) -> str:
    return binding.key_display or binding.key.split(",")[0]


def hints() -> list[tuple[str, str]]:
    """``(keys, what)`` for every key the main header shows, a group's keys together where its
    first is."""
    out: list[tuple[str, str]] = []
    grouped: dict[Binding.Group, int] = {}
    for binding in KEYS:
        if not binding.show or _owner(binding) not in HEADER_OWNERS:
            continue
        group = binding.group
        if group is None:
            out.append((key_label(binding), binding.description))
        elif group in grouped:
            keys, label = out[grouped[group]]
            out[grouped[group]] = (f"{keys} {key_label(binding)}", label)
        else:
            grouped[group] = len(out)
            out.append((key_label(binding), group.description))
    return out


def screen_hints(owner: str) -> list[tuple[str, str]]:
    """``(key, what)`` for every shown key of one view, for its status line."""
    return [(key_label(b), b.description) for b in KEYS if b.show and _owner(b) == owner]


def help_sections() -> list[tuple[str, list[tuple[str, str]]]]:
    """Every key the views bind, as ``(title, [(keys, what)])``: ungrouped keys under VIEW,
    each group under its own name. The help screen's own keys close it and are not listed."""
    sections: dict[str, list[tuple[str, str]]] = {}
    for binding in KEYS:
        if _owner(binding) in ("help", "tags"):
            continue
        title = binding.group.description.upper() if binding.group else "VIEW"
        rows = sections.setdefault(title, [])
        keys, what = key_label(binding), binding.tooltip or binding.description
        same_key = next((i for i, (k, _) in enumerate(rows) if k == keys), None)
        if same_key is not None:
            if what not in rows[same_key][1].split(", "):
                rows[same_key] = (keys, f"{rows[same_key][1]}, {what}")
        elif rows and rows[-1][1] == what:
            rows[-1] = (f"{rows[-1][0]} {keys}", what)
        else:
            rows.append((keys, what))
    return list(sections.items())


def _owner(binding: Binding) -> str:
    return (binding.id or "").partition(".")[0]
