"""Pure functions that turn pull data into display cells, shared by ``ls``, ``wait`` and the TUI."""

from __future__ import annotations

import re
from datetime import datetime

import msgspec

from pulltrace.model import LayerStatus, PullStatus

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def human_bytes(n: float) -> str:
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_speed(bytes_per_sec: float) -> str:
    return f"{human_bytes(bytes_per_sec)}/s" if bytes_per_sec > 0 else "-"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def bar(percent: float, width: int = 20) -> str:
    filled = round(width * max(0.0, min(percent, 100.0)) / 100)
    return "█" * filled + "░" * (width - filled)


def image_name(pull: PullStatus) -> str:
    if pull.image_ref:
        return pull.image_ref
    if pull.layers:
        return f"<resolving {pull.layers[0].digest[:19]}>"
    return "<unknown>"


def size_cell(pull: PullStatus) -> str:
    if not pull.total_known:
        return human_bytes(pull.downloaded_bytes) if pull.downloaded_bytes else "-"
    have = pull.downloaded_bytes + pull.cached_bytes
    cell = f"{human_bytes(have)} / {human_bytes(pull.total_bytes)}"
    if pull.cached_bytes:
        cell += f" ({human_bytes(pull.cached_bytes)} cached)"
    return cell


def eta_cell(pull: PullStatus) -> str:
    """Time left while active, time taken once completed."""
    if pull.phase in ("resolving", "pulling"):
        return human_duration(pull.eta_seconds)
    if pull.phase == "completed" and pull.started_at and pull.completed_at:
        return human_duration((pull.completed_at - pull.started_at).total_seconds())
    return "-"


def pods_cell(pull: PullStatus) -> str:
    if not pull.pods:
        return "-"
    first = f"{pull.pods[0].namespace}/{pull.pods[0].pod_name}"
    return first if len(pull.pods) == 1 else f"{first} +{len(pull.pods) - 1}"


# --- Styled cells for the TUI ---------------------------------------------------------------
#
# A cell is a tuple of (text, style) spans rather than a rich ``Text`` so that these functions
# stay free of any terminal library: ``ls`` imports this module and must start fast, and tests
# can assert on plain strings and style names. The TUI assembles spans into ``Text``.

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


def printable(text: str, limit: int = 300) -> str:
    """Text from the network made safe for a terminal line: control, line-breaking and
    direction-changing characters escaped (``\\x1b``, ``\\n``), at most ``limit``
    characters."""
    head = text[: limit + 1]  # escaping only lengthens: the rest would be cut anyway
    escaped = _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), head)
    return fit(escaped, limit)


def fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def compact_bytes(n: float) -> str:
    """At most five characters (``512B``, ``12.3K``, ``412M``, ``1.2G``) so columns never jump."""
    value = float(n)
    for unit in "BKMGT":
        if abs(value) < 1000 or unit == "T":
            if unit == "B":
                return f"{value:.0f}B"
            return f"{value:.1f}{unit}" if abs(value) < 100 else f"{value:.0f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def compact_speed(bytes_per_sec: float) -> str:
    return f"{compact_bytes(bytes_per_sec)}/s" if bytes_per_sec > 0 else "-"


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


def split_image(ref: str) -> tuple[str, str, str]:
    """``registry``, ``repository`` and ``:tag`` or ``@digest`` (shortened) of an image reference,
    following the reference grammar: the first path component is a registry only when it
    looks like a host (has a dot or a port, or is ``localhost``)."""
    name, at, digest = ref.partition("@")
    suffix = f"@{digest.split(':', 1)[-1][:12]}" if at else ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, suffix = name[:colon], f":{name[colon + 1 :]}" + suffix
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest, suffix
    return "", name, suffix


def image_label(pull: PullStatus) -> tuple[str, str, str]:
    if pull.image_ref:
        return split_image(pull.image_ref)
    if pull.repository:
        return split_image(pull.repository)
    return "", image_name(pull), ""


def image_cell(pull: PullStatus, width: int, color: bool) -> Cell:
    """Registry dimmed, repository plain, tag highlighted. When the column is narrow the
    registry goes first, then the repository's leading path, because the last path component
    and the tag are what people recognise; only then is anything cut."""
    p = palette(color)
    registry, repo, tag = image_label(pull)
    if registry and len(registry) + 1 + len(repo) + len(tag) <= width:
        return ((registry + "/", p.muted), (repo, ""), (tag, p.accent))
    if len(repo) + len(tag) > width:
        repo = repo.rsplit("/", 1)[-1]
    if len(repo) + len(tag) > width:
        tag = fit(tag, max(6, width - len(repo)))
        repo = fit(repo, width - len(tag))
    return ((repo, ""), (tag, p.accent))


def progress_cell(
    percent: float,
    cached_fraction: float,
    phase: str,
    bar_width: int,
    color: bool,
) -> Cell:
    """A bar whose already-cached share is drawn apart from what this pull downloaded, then the
    percentage; a fixed width keeps the column still while numbers change."""
    p = palette(color)
    pct = max(0.0, min(percent, 100.0))
    filled = round(bar_width * pct / 100)
    cached = min(filled, round(bar_width * max(0.0, min(cached_fraction, 1.0))))
    done_style = {"failed": p.bar_failed, "completed": p.bar_finished}.get(phase, p.bar_done)
    cached_style = p.bar_cached if phase in ("resolving", "pulling") else p.bar_finished_cached
    spans: list[Span] = []
    if cached:
        spans.append((p.cached_char * cached, cached_style))
    if filled - cached:
        spans.append(("█" * (filled - cached), done_style))
    if bar_width - filled:
        spans.append((p.empty_char * (bar_width - filled), p.bar_empty))
    spans.append((f" {pct:3.0f}%", p.bad if phase == "failed" else ""))
    return tuple(spans)


def pull_progress_cell(pull: PullStatus, bar_width: int, color: bool) -> Cell:
    fraction = pull.cached_bytes / pull.total_bytes if pull.total_bytes else 0.0
    return progress_cell(pull.percent, fraction, pull.phase, bar_width, color)


def size_text(pull: PullStatus, with_cached: bool) -> str:
    """``downloaded+cached / total``; with room, how much of it the node already had."""
    if not pull.total_known:
        return compact_bytes(pull.downloaded_bytes) if pull.downloaded_bytes else "-"
    have = pull.downloaded_bytes + pull.cached_bytes
    text = f"{compact_bytes(have)}/{compact_bytes(pull.total_bytes)}"
    if with_cached and pull.cached_bytes:
        text += f" ({compact_bytes(pull.cached_bytes)} cached)"
    return text


def size_spans(pull: PullStatus, with_cached: bool, color: bool) -> Cell:
    text = size_text(pull, with_cached)
    main, sep, rest = text.partition(" (")
    if not sep:
        return ((text, ""),)
    return ((main, ""), (sep + rest, palette(color).cached))


def speed_cell(bytes_per_sec: float, active: bool, color: bool) -> Cell:
    p = palette(color)
    return ((compact_speed(bytes_per_sec), p.active if active else p.muted),)


_REASONS = (("stalled", "stalled"), ("aborted", "aborted"), ("timeout", "timeout"))


def failure_reason(error: str) -> str:
    """A one-word cause for a narrow column; the detail screen shows the whole message."""
    lowered = error.lower()
    for needle, word in _REASONS:
        if needle in lowered:
            return word
    return "error" if error else "failed"


def eta_or_elapsed_cell(pull: PullStatus, now: datetime, color: bool) -> Cell:
    """Active pulls show time left; finished ones how long they took; failed ones why."""
    p = palette(color)
    if pull.phase == "failed":
        return ((failure_reason(pull.error), p.bad),)
    if pull.phase in ("resolving", "pulling"):
        if pull.eta_seconds is not None:
            return ((human_duration(pull.eta_seconds), ""),)
        if pull.started_at:
            return (("+" + human_duration((now - pull.started_at).total_seconds()), p.muted),)
        return (("-", p.muted),)
    if pull.started_at and pull.completed_at:
        return ((human_duration((pull.completed_at - pull.started_at).total_seconds()), p.muted),)
    return (("-", p.muted),)


def pods_spans(pull: PullStatus, width: int, color: bool) -> Cell:
    """Count first so that it survives truncation, then the first pod's name."""
    if not pull.pods:
        return (("-", palette(color).muted),)
    count = f"{len(pull.pods)} "
    return ((count, palette(color).accent), (fit(pull.pods[0].pod_name, width - len(count)), ""))


def short_digest(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def media_kind(media_type: str) -> str:
    """``tar+gzip`` from ``application/vnd.oci.image.layer.v1.tar+gzip`` (and ``tar.gzip`` from
    docker's ``…rootfs.diff.tar.gzip``): the compression is what differs between layers."""
    if not media_type:
        return "-"
    for marker in ("layer.v1.", "rootfs.diff."):
        if marker in media_type:
            return media_type.split(marker, 1)[1]
    return media_type.rsplit("/", 1)[-1]


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


def layer_cells(layer: LayerStatus, bar_width: int, color: bool) -> tuple[Cell, ...]:
    """Short digest, media type, bar, bytes, speed, state: one row of the detail layer table."""
    p = palette(color)
    state = layer_state(layer)
    phase = "completed" if state in ("done", "cached") else "pulling"
    have = layer.total_bytes if state in ("done", "cached") else layer.downloaded_bytes
    size = f"{compact_bytes(have)}/{compact_bytes(layer.total_bytes)}"
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
        ((size, ""),),
        speed_cell(layer.bytes_per_sec, state == "pulling", color),
        ((state, state_style),),
    )
