"""``ls`` output formats: JSON for scripts, aligned text tables for people.

The table's cells are ``render``'s plain text, the same text the TUI styles, so every string
from the network in them is already escaped and bounded. JSON keeps every string exact; only
characters a terminal would act on are written as JSON escapes (``\\u009b``), which decode to
the same string.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from pulltrace import render
from pulltrace.model import PullList, PullStatus, encode

_TABLE = ("IMAGE", "NODE", "PHASE", "PROGRESS", "SIZE", "SPEED", "ETA/TOOK")
_WIDE = (*_TABLE, "LAYERS", "PODS", "STARTED", "ERROR")
BAR = 10

_NOT_PLAIN = re.compile(r"[^\x20-\x7e\n]")
"""What JSON may hold raw beyond printable ASCII: JSON already escapes C0 controls, not DEL,
C1 controls, bidi overrides or other invisible characters."""


def _json_safe(match: re.Match[str]) -> str:
    char = match.group()
    if char.isprintable():
        return char
    code = ord(char)
    if code > 0xFFFF:  # a surrogate pair, as JSON spells a character beyond the BMP
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def terminal_safe_json(text: str) -> str:
    """JSON text with its non-printable characters (outside ASCII, where JSON leaves them raw)
    written as ``\\uXXXX`` escapes: the same JSON value, safe to print."""
    return text if text.isprintable() else _NOT_PLAIN.sub(_json_safe, text)


def render_json(pulls: list[PullStatus]) -> str:
    """``PullList`` JSON whose strings decode exactly as they came, with nothing in it that a
    terminal would act on."""
    return terminal_safe_json(encode(PullList(pulls=pulls)).decode()) + "\n"


def row(pull: PullStatus, wide: bool, now: datetime) -> list[str]:
    reason = f" ({render.failure_reason(pull.error)})" if pull.error else ""
    cells = [
        render.image_text(pull),
        render.node_text(pull.node_name),
        pull.phase + reason,
        render.progress_text(pull.percent, render.cached_share(pull), BAR),
        render.size_text(pull, with_cached=True),
        render.speed_text(pull.bytes_per_sec),
        render.timing_text(pull, now),
    ]
    if wide:
        started = pull.started_at.strftime("%Y-%m-%dT%H:%M:%SZ") if pull.started_at else "-"
        error = render.message_text(pull.error) if pull.error else "-"
        cells += [render.layers_text(pull), render.pods_text(pull), started, error]
    return cells


def render_table(pulls: list[PullStatus], wide: bool = False, now: datetime | None = None) -> str:
    if not pulls:
        return "No image pulls.\n"
    now = now or datetime.now(UTC)
    rows = [list(_WIDE if wide else _TABLE)] + [row(p, wide, now) for p in pulls]
    widths = [max(render.cell_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "   ".join(render.pad(c, w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    return "\n".join(lines) + "\n"


def format_pulls(pulls: list[PullStatus], fmt: str) -> str:
    if fmt == "json":
        return render_json(pulls)
    return render_table(pulls, wide=fmt == "wide")
