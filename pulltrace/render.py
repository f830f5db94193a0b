"""Pure functions that turn pull data into display cells, shared by ``ls``, ``wait`` and the TUI."""

from __future__ import annotations

from pulltrace.model import PullStatus

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


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
    if pull.phase in ("resolving", "pulling"):
        return human_duration(pull.eta_seconds)
    if pull.started_at and pull.completed_at:
        return human_duration((pull.completed_at - pull.started_at).total_seconds())
    return "-"


def pods_cell(pull: PullStatus) -> str:
    if not pull.pods:
        return "-"
    first = f"{pull.pods[0].namespace}/{pull.pods[0].pod_name}"
    return first if len(pull.pods) == 1 else f"{first} +{len(pull.pods) - 1}"
