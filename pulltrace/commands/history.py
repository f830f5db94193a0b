"""``history``, ``stats`` and ``updates`` output: exact JSON for scripts, aligned tables for
people.

The cells are ``render``'s plain text (sizes, speeds, durations), and every string the
collector sent (image references, nodes, digests, errors, tag names, DIUN's fields) passes
through ``render.printable`` on its way into a table: a webhook is anyone who can reach it.
JSON is the structs as the collector sent them, with only what a terminal would act on written
as ``\\u`` escapes (``output.terminal_safe_json``): the same JSON value.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pulltrace import render
from pulltrace.commands.output import terminal_safe_json
from pulltrace.model import (
    FinishedPull,
    HistoryList,
    HistoryStats,
    ImageUpdate,
    StatsGroup,
    UpdateList,
    encode,
)

_HISTORY = ("IMAGE", "NODE", "PHASE", "TOOK", "SIZE", "AVG SPEED", "AGE")
_HISTORY_WIDE = (*_HISTORY, "PEAK SPEED", "LAYERS", "PODS", "DIGEST", "FINISHED", "ERROR")
_STATS = ("PULLS", "FAILED", "DOWNLOADED", "P50", "P95", "MAX", "SPEED P50", "SPEED P95")
_UPDATES = ("IMAGE", "STATUS", "TAG", "PLATFORM", "DIGEST", "CREATED", "RECEIVED", "STATE")


def _table(header: Sequence[str], rows: list[list[str]]) -> str:
    every = [list(header), *rows]
    widths = [max(render.cell_width(r[i]) for r in every) for i in range(len(header))]
    lines = [
        "   ".join(render.pad(c, w) for c, w in zip(r, widths, strict=True)).rstrip() for r in every
    ]
    return "\n".join(lines) + "\n"


def _json(doc: HistoryList | HistoryStats | UpdateList) -> str:
    return terminal_safe_json(encode(doc).decode()) + "\n"


def _age(moment: datetime | None, now: datetime) -> str:
    """``5m02s``: how long ago, as kubectl's AGE; ``-`` when unknown."""
    return render.duration_text(render.elapsed(moment, now)) if moment else "-"


def _moment(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


# -- history -----------------------------------------------------------------------------------


def history_row(pull: FinishedPull, wide: bool, now: datetime) -> list[str]:
    reason = f" ({render.failure_reason(pull.error)})" if pull.error else ""
    cells = [
        render.image_text(pull),
        render.node_text(pull.node_name),
        pull.phase + reason,
        render.duration_text(pull.duration_seconds) if pull.duration_seconds else "-",
        render.size_text(pull, with_cached=True),
        render.speed_text(pull.average_bytes_per_sec),
        _age(pull.completed_at, now),
    ]
    if wide:
        cells += [
            render.speed_text(pull.peak_bytes_per_sec),
            render.layers_text(pull),
            render.pods_text(pull),
            render.short_digest(pull.manifest_digest) if pull.manifest_digest else "-",
            _moment(pull.completed_at),
            render.message_text(pull.error) if pull.error else "-",
        ]
    return cells


def format_history(page: HistoryList, fmt: str, now: datetime | None = None) -> str:
    """``page`` as ``table``, ``wide`` or ``json``; newest first, as the collector sends it."""
    if fmt == "json":
        return _json(page)
    if not page.pulls:
        return "No finished pulls.\n"
    now = now or datetime.now(UTC)
    wide = fmt == "wide"
    return _table(
        _HISTORY_WIDE if wide else _HISTORY, [history_row(p, wide, now) for p in page.pulls]
    )


# -- stats -------------------------------------------------------------------------------------


def stats_row(group: StatsGroup) -> list[str]:
    took, speed = group.duration_seconds, group.average_bytes_per_sec
    return [
        render.printable(group.key, render.REF_MAX),
        str(group.count),
        str(group.failures),
        render.bytes_text(group.bytes),
        render.duration_text(took.p50),
        render.duration_text(took.p95),
        render.duration_text(took.max),
        render.speed_text(speed.p50),
        render.speed_text(speed.p95),
    ]


def format_stats(stats: HistoryStats, fmt: str) -> str:
    """One row per image, node or repository: pulls, failures, bytes downloaded, and the
    quantiles of the time a pull took and of its average speed."""
    if fmt == "json":
        return _json(stats)
    if not stats.groups:
        return "No finished pulls in the window.\n"
    header = (stats.by.upper(), *_STATS)
    return _table(header, [stats_row(g) for g in stats.groups])


# -- updates -----------------------------------------------------------------------------------


def update_row(update: ImageUpdate, now: datetime) -> list[str]:
    return [
        render.printable(update.image, render.REF_MAX),
        render.printable(update.status, 32) or "-",
        render.printable(update.tag.name, 63) if update.tag else "-",
        render.printable(update.platform, 64) or "-",
        render.short_digest(update.digest) if update.digest else "-",
        _age(update.created, now),
        _age(update.received_at, now),
        "dismissed" if update.acknowledged else "new",
    ]


def visible_updates(updates: UpdateList, show_all: bool) -> UpdateList:
    """The updates ``updates`` shows: without ``--all`` the dismissed ones are left out."""
    if show_all:
        return updates
    return UpdateList(updates=[u for u in updates.updates if not u.acknowledged])


def format_updates(
    updates: UpdateList, fmt: str, *, hidden: int = 0, now: datetime | None = None
) -> str:
    """``hidden``: how many dismissed updates were left out, said when nothing else is."""
    if fmt == "json":
        return _json(updates)
    if not updates.updates:
        if hidden:
            return f"No new image updates ({hidden} dismissed: --all shows them).\n"
        return "No image updates.\n"
    now = now or datetime.now(UTC)
    return _table(_UPDATES, [update_row(u, now) for u in updates.updates])
