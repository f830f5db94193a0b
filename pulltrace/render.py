"""Text for pull data, shared by ``ls``, ``wait`` and the TUI.

Two steps, as k9s has a renderer and a colorer: first one plain-text function per quantity
(bytes, speed, duration, percent, a pull's size, timing, pods, image, node, message), then a
styling step that cuts that text into spans, ``(text, style)``, for the TUI. ``ls`` and ``wait``
print the plain text; the TUI draws the spans. A quantity therefore reads the same everywhere.

Cells are tuples of spans rather than rich ``Text`` so that this module stays free of any
terminal library: ``ls`` imports it and must start fast, and tests can assert on plain strings
and style names. The TUI assembles spans into ``Text`` (never markup).

Terminal safety. Every string that came from the network (image references, node, pod and
namespace names, digests, media types, ids, error messages) passes through ``printable`` on its
way into any of this text: control and invisible characters are escaped visibly and long
fields are cut with an ellipsis, so that a peer can neither drive the terminal (ESC, BEL, CR,
C1, bidi overrides) nor blow up a table. JSON output is not text for a terminal and is left
exact.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime

import msgspec

from pulltrace.model import ACTIVE_PHASES, REASON_MAX, LayerStatus, PullStatus

NAME_MAX = 253
"""Characters of a name shown whole: Kubernetes names (nodes, pods) are DNS subdomains of at
most 253; anything longer is not a name a cluster accepts."""
REF_MAX = 255
"""Characters of an image reference shown whole: the distribution spec's limit on a name."""
MESSAGE_MAX = REASON_MAX
"""Characters of an error message: one sentence, not a log."""
LINE_MAX = 4096
"""Characters of a ``wait`` line, whatever it is made of: a last bound behind the fields'."""
DIGEST_SHORT = 12
ELLIPSIS = "…"

# --- Terminal safety ------------------------------------------------------------------------


def printable(text: str, limit: int = NAME_MAX) -> str:
    """``text`` made safe for a terminal: every character Python would not print as itself
    (C0 and C1 controls, DEL, line and paragraph separators, format characters such as the bidi
    overrides and zero-width ones, unpaired surrogates, unassigned and private-use code
    points, spaces other than the ASCII one) is written as its escape (``\\x1b``, ``\\r``,
    ``\\u202e``), then the result is cut to at most ``limit`` characters and terminal cells,
    ending in an ellipsis when cut. A backslash is left as it is: an escape is for the eye,
    and paths stay readable. Idempotent: safe text is returned unchanged (up to ``limit``)."""
    head = text[: limit + 1]  # escaping only lengthens: the rest would be cut anyway
    if not head.isprintable():
        head = "".join(c if c.isprintable() else _escape(c) for c in head)
    return fit(head, limit)


def _escape(char: str) -> str:
    return char.encode("unicode_escape").decode("ascii")


def _cells(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def cell_width(text: str) -> int:
    """Terminal cells ``text`` takes (wide East Asian characters take two)."""
    return len(text) if text.isascii() else sum(map(_cells, text))


def fit(text: str, width: int) -> str:
    """``text`` in at most ``width`` terminal cells and ``width`` characters (combining marks
    take no cell but still count), the last one an ellipsis when cut."""
    if text.isascii():
        return text if len(text) <= width else text[: max(0, width - 1)] + ELLIPSIS[: width > 0]
    if len(text) <= width and cell_width(text) <= width:
        return text
    used, kept = 0, []
    for char in text:
        used += max(1, _cells(char))
        if used > width - 1:
            break
        kept.append(char)
    return "".join(kept) + ELLIPSIS[: width > 0]


def pad(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` terminal cells."""
    return text + " " * (width - cell_width(text))


# --- Plain text: one function per quantity --------------------------------------------------

_BYTES_MAX = 2**63
"""Past int64 a byte count is nonsense from a peer; it is shown as such, not computed with."""


def bytes_text(n: float) -> str:
    """At most five characters (``512B``, ``12.3K``, ``412M``, ``1.2G``) so columns never
    jump; binary units (K is 1024)."""
    if not n >= 0:  # negative or NaN: not a byte count
        return "-"
    if n >= _BYTES_MAX:
        return ">8E"
    value = float(n)
    for unit in "BKMGTPE":
        if value < 1000 or unit == "E":
            if unit == "B":
                return f"{value:.0f}B"
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def speed_text(bytes_per_sec: float) -> str:
    return f"{bytes_text(bytes_per_sec)}/s" if bytes_per_sec > 0 else "-"


_DAYS_MAX = 999


def duration_text(seconds: float | None) -> str:
    """``59s``, ``1m01s``, ``2h02m``, ``4d04h``, ``365d``: at most six characters, whatever a
    peer says, so that ``+`` and an elapsed time fit the seven of the ETA column."""
    if seconds is None or seconds != seconds:
        return "-"
    if seconds >= (_DAYS_MAX + 1) * 86400:
        return f">{_DAYS_MAX}d"
    s = round(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 100 * 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s < 100 * 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    return f"{s // 86400}d"


def _clamp(percent: float) -> float:
    return max(0.0, min(percent, 100.0)) if percent == percent else 0.0


def percent_text(percent: float) -> str:
    """``50%``; right-aligned in four cells where it stands in a column."""
    return f"{_clamp(percent):.0f}%"


def bar_parts(percent: float, cached_fraction: float, width: int) -> tuple[int, int, int]:
    """Cells of a ``width`` bar: already cached, downloaded by this pull, still to come."""
    filled = round(width * _clamp(percent) / 100)
    share = max(0.0, min(cached_fraction, 1.0)) if cached_fraction == cached_fraction else 0.0
    cached = min(filled, round(width * share))
    return cached, filled - cached, width - filled


def progress_text(percent: float, cached_fraction: float, width: int) -> str:
    """``▓▓███░░░░░  50%``: the bar's cached share apart from what this pull downloaded."""
    cached, done, empty = bar_parts(percent, cached_fraction, width)
    bar = MONO.cached_char * cached + "█" * done + MONO.empty_char * empty
    return f"{bar} {percent_text(percent):>4}"


def cached_share(pull: PullStatus) -> float:
    """The share of the pull's bytes the node already had."""
    return pull.cached_bytes / pull.total_bytes if pull.total_bytes else 0.0


def amount_text(have: float, total: float) -> str:
    """``100M/200M``: how much of something is there."""
    return f"{bytes_text(have)}/{bytes_text(total)}"


def size_text(pull: PullStatus, with_cached: bool) -> str:
    """``downloaded+cached / total``; with room, how much of it the node already had."""
    if not pull.total_known:
        return bytes_text(pull.downloaded_bytes) if pull.downloaded_bytes else "-"
    text = amount_text(pull.downloaded_bytes + pull.cached_bytes, pull.total_bytes)
    if with_cached and pull.cached_bytes:
        text += f" ({bytes_text(pull.cached_bytes)} cached)"
    return text


def elapsed(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def timing_text(pull: PullStatus, now: datetime) -> str:
    """Time left while active (``+`` and the time so far while that is unknown), time taken
    once completed, ``-`` otherwise."""
    if pull.phase in ACTIVE_PHASES:
        if pull.eta_seconds is not None:
            return duration_text(pull.eta_seconds)
        if pull.started_at:
            return "+" + duration_text(elapsed(pull.started_at, now))
        return "-"
    if pull.phase == "completed" and pull.started_at and pull.completed_at:
        return duration_text(elapsed(pull.started_at, pull.completed_at))
    return "-"


def layers_text(pull: PullStatus) -> str:
    """``3/5 (1 cached)``: layers done of all, and how many of those the node had."""
    text = f"{pull.layers_done}/{pull.layer_count}"
    if pull.layers_cached:
        text += f" ({pull.layers_cached} cached)"
    return text


def pods_text(pull: PullStatus, width: int = NAME_MAX) -> str:
    """``3 checkout-api-7d9f-abcde``: the count first, so that it survives truncation, then
    the first waiting pod's name, in at most ``width`` cells; ``-`` for none."""
    if not pull.pods:
        return "-"
    count = f"{len(pull.pods)} "
    return count + fit(printable(pull.pods[0].pod_name), width - len(count))


def node_text(name: str) -> str:
    return printable(name, NAME_MAX)


def message_text(message: str) -> str:
    """An error message from a peer, on one line."""
    return printable(message, MESSAGE_MAX)


def short_digest(digest: str) -> str:
    """``e6e6e6e6e6e6`` from ``sha256:e6e6…``: enough to tell layers apart."""
    return printable(digest.split(":", 1)[-1][:DIGEST_SHORT], DIGEST_SHORT)


def image_text(pull: PullStatus) -> str:
    """The pull's image reference, or what it is known by until it has one."""
    if pull.image_ref:
        return printable(pull.image_ref, REF_MAX)
    if pull.layers:
        return f"<resolving {printable(pull.layers[0].digest[:19])}>"
    return "<unknown>"


def split_image(ref: str) -> tuple[str, str, str]:
    """``registry``, ``repository`` and ``:tag`` or ``@digest`` (shortened) of an image reference,
    following the reference grammar: the first path component is a registry only when it
    looks like a host (has a dot or a port, or is ``localhost``)."""
    name, at, digest = ref.partition("@")
    suffix = f"@{digest.split(':', 1)[-1][:DIGEST_SHORT]}" if at else ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, suffix = name[:colon], f":{name[colon + 1 :]}" + suffix
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest, suffix
    return "", name, suffix


def image_label(pull: PullStatus) -> tuple[str, str, str]:
    """The image as ``split_image`` parts, each safe to print."""
    if pull.image_ref:
        return split_image(printable(pull.image_ref, REF_MAX))
    if pull.repository:
        return split_image(printable(pull.repository, REF_MAX))
    return "", image_text(pull), ""


_REASONS = (("stalled", "stalled"), ("aborted", "aborted"), ("timeout", "timeout"))


def failure_reason(error: str) -> str:
    """A one-word cause for a narrow column; the whole message is shown where there is room."""
    lowered = error.lower()
    for needle, word in _REASONS:
        if needle in lowered:
            return word
    return "error" if error else "failed"


def media_kind(media_type: str) -> str:
    """``tar+gzip`` from ``application/vnd.oci.image.layer.v1.tar+gzip`` (and ``tar.gzip`` from
    docker's ``…rootfs.diff.tar.gzip``): the compression is what differs between layers."""
    if not media_type:
        return "-"
    for marker in ("layer.v1.", "rootfs.diff."):
        if marker in media_type:
            return printable(media_type.split(marker, 1)[1])
    return printable(media_type.rsplit("/", 1)[-1])


def layer_state(layer: LayerStatus) -> str:
    if layer.cached:
        return "cached"
    if layer.completed_at is not None or (layer.total_known and layer.percent >= 100):
        return "done"
    if layer.queued:
        return "queued"  # for one of containerd's download slots, taken by other layers
    if layer.started_at is None and not layer.downloaded_bytes:
        return "waiting"
    return "pulling"


# --- Styling: the same text as spans for the TUI --------------------------------------------

Span = tuple[str, str]
Cell = tuple[Span, ...]


class Palette(msgspec.Struct, frozen=True, kw_only=True):
    """Style names by role. The monochrome palette keeps only text attributes, so that under
    ``NO_COLOR`` states stay distinguishable by glyph, weight and dimness alone."""

    dim: str
    muted: str
    accent: str
    active: str
    ok: str
    bad: str
    warn: str
    cached: str
    bar_done: str
    bar_cached: str
    bar_empty: str
    bar_failed: str
    bar_finished: str
    bar_finished_cached: str
    cached_char: str
    empty_char: str


COLOR = Palette(
    dim="dim",
    muted="#8a8f98",
    accent="bold #5fd7ff",
    active="#87d7ff",
    ok="#5fd787",
    bad="bold #ff5f5f",
    warn="#ffd75f",
    cached="#af87ff",
    bar_done="#5fafff",
    bar_cached="#af87ff",
    bar_empty="#262a33",
    bar_failed="#d75f5f",
    bar_finished="#2c4a66",
    bar_finished_cached="#4a3d66",
    cached_char="█",
    empty_char="█",
)
MONO = Palette(
    dim="dim",
    muted="dim",
    accent="bold",
    active="",
    ok="",
    bad="bold",
    warn="",
    cached="",
    bar_done="",
    bar_cached="dim",
    bar_empty="dim",
    bar_failed="bold",
    bar_finished="dim",
    bar_finished_cached="dim",
    cached_char="▓",
    empty_char="░",
)

GLYPHS: dict[str, str] = {
    "resolving": "◌",
    "pulling": "↓",
    "completed": "✓",
    "failed": "✗",
    "stale": "?",
}


def palette(color: bool) -> Palette:
    return COLOR if color else MONO


def plain(cell: Cell) -> str:
    return "".join(text for text, _ in cell)


def dimmed(cell: Cell) -> Cell:
    """Finished rows recede so that the eye lands on what is still moving."""
    return tuple((text, f"{style} dim".strip()) for text, style in cell)


def glyph_cell(phase: str, color: bool) -> Cell:
    p = palette(color)
    style = {
        "pulling": p.active,
        "resolving": p.muted,
        "completed": p.ok,
        "failed": p.bad,
        "stale": p.warn,
    }.get(phase, "")
    return ((GLYPHS.get(phase, " "), style),)


def image_cell(pull: PullStatus, width: int, color: bool) -> Cell:
    """Registry dimmed, repository plain, tag highlighted. When the column is narrow the
    registry goes first, then the repository's leading path, because the last path component
    and the tag are what people recognise; only then is anything cut."""
    p = palette(color)
    registry, repo, tag = image_label(pull)
    if registry and cell_width(registry) + 1 + cell_width(repo) + cell_width(tag) <= width:
        return ((registry + "/", p.muted), (repo, ""), (tag, p.accent))
    if cell_width(repo) + cell_width(tag) > width:
        repo = repo.rsplit("/", 1)[-1]
    if cell_width(repo) + cell_width(tag) > width:
        tag = fit(tag, max(6, width - cell_width(repo)))
        repo = fit(repo, width - cell_width(tag))
    return ((repo, ""), (tag, p.accent))


def node_cell(pull: PullStatus, width: int) -> Cell:
    return ((fit(node_text(pull.node_name), width), ""),)


def progress_cell(
    percent: float,
    cached_fraction: float,
    phase: str,
    bar_width: int,
    color: bool,
) -> Cell:
    """``progress_text`` in colour: the palette draws the cached share, what this pull
    downloaded and what is left apart; a fixed width keeps the column still."""
    p = palette(color)
    cached, done, empty = bar_parts(percent, cached_fraction, bar_width)
    done_style = {"failed": p.bar_failed, "completed": p.bar_finished}.get(phase, p.bar_done)
    cached_style = p.bar_cached if phase in ACTIVE_PHASES else p.bar_finished_cached
    spans: list[Span] = []
    if cached:
        spans.append((p.cached_char * cached, cached_style))
    if done:
        spans.append(("█" * done, done_style))
    if empty:
        spans.append((p.empty_char * empty, p.bar_empty))
    spans.append((f" {percent_text(percent):>4}", p.bad if phase == "failed" else ""))
    return tuple(spans)


def pull_progress_cell(pull: PullStatus, bar_width: int, color: bool) -> Cell:
    return progress_cell(pull.percent, cached_share(pull), pull.phase, bar_width, color)


def size_cell(pull: PullStatus, with_cached: bool, color: bool) -> Cell:
    """``size_text`` with its cached part in the cached colour."""
    text = size_text(pull, with_cached)
    main, sep, rest = text.partition(" (")
    if not sep:
        return ((text, ""),)
    return ((main, ""), (sep + rest, palette(color).cached))


def speed_cell(bytes_per_sec: float, active: bool, color: bool) -> Cell:
    p = palette(color)
    return ((speed_text(bytes_per_sec), p.active if active else p.muted),)


def timing_cell(pull: PullStatus, now: datetime, color: bool) -> Cell:
    """``timing_text``, muted unless it is a time left."""
    known = pull.phase in ACTIVE_PHASES and pull.eta_seconds is not None
    return ((timing_text(pull, now), "" if known else palette(color).muted),)


def failure_cell(pull: PullStatus, color: bool) -> Cell:
    return ((failure_reason(pull.error), palette(color).bad),)


def pods_cell(pull: PullStatus, width: int, color: bool) -> Cell:
    """``pods_text`` with the count highlighted."""
    p = palette(color)
    text = pods_text(pull, width)
    if not pull.pods:
        return ((text, p.muted),)
    count, _, name = text.partition(" ")
    return ((count + " ", p.accent), (name, ""))


def layer_cells(layer: LayerStatus, bar_width: int, color: bool) -> tuple[Cell, ...]:
    """Short digest, media type, bar, bytes, speed, state: one row of the detail layer table."""
    p = palette(color)
    state = layer_state(layer)
    phase = "completed" if state in ("done", "cached") else "pulling"
    have = layer.total_bytes if state in ("done", "cached") else layer.downloaded_bytes
    state_style = {"cached": p.cached, "done": p.ok, "waiting": p.muted, "queued": p.muted}.get(
        state, p.active
    )
    return (
        ((short_digest(layer.digest), p.muted),),
        ((media_kind(layer.media_type), ""),),
        progress_cell(
            100.0 if state == "cached" else layer.percent,
            1.0 if layer.cached else 0.0,
            phase,
            bar_width,
            color,
        ),
        ((amount_text(have, layer.total_bytes), ""),),
        speed_cell(layer.bytes_per_sec, state == "pulling", color),
        ((state, state_style),),
    )


# --- From the collector's history (issue 12) ------------------------------------------------


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def history_eta_text(seconds: float, count: int) -> str:
    """``~1m40s (p50 of 14 pulls)``: an ETA from earlier pulls of the repository, marked as
    such (the ``~``), and what it rests on."""
    return f"~{duration_text(seconds)} (p50 of {plural(count, 'pull')})"


def history_eta_cell(seconds: float, count: int, full: bool, color: bool) -> Cell:
    """``history_eta_text`` in the ETA's colours; the table's narrow column gets only the
    figure, the detail screen the whole text."""
    p = palette(color)
    figure, _, basis = history_eta_text(seconds, count).partition(" ")
    if not full:
        return ((figure, p.warn),)
    return ((figure, p.warn), (f" {basis}", p.muted))


def history_stats_text(count: int, failures: int, p50: float, p95: float) -> str:
    """``14 earlier pulls: p50 1m40s, p95 3m10s, 1 failed``."""
    text = f"{plural(count, 'earlier pull')}: p50 {duration_text(p50)}, p95 {duration_text(p95)}"
    return text + (f", {failures} failed" if failures else "")
