"""A pull's figures from its layers: the one rule for totals, percent, speed and ETA.

The agent's tracker, the demo's simulated agents and the collector's merge all state a pull's
progress; with one rule here, a pull reads the same whether it is watched on the node
(``--containerd``), through the collector, or in the demo. A leaf: it imports only the model and
the rate helpers, so every layer may use it.

Byte counts follow the model's rule: ``downloaded`` came over the network during this pull,
``cached`` was on the node before it began, and ``percent`` counts both against ``total``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from pulltrace.model import ACTIVE_PHASES, ETA_MAX, LayerStatus, PullStatus, StatsGroup
from pulltrace.rate import eta_seconds


class Totals(msgspec.Struct, frozen=True, kw_only=True):
    """What a pull's layers add up to."""

    total_bytes: int
    downloaded_bytes: int
    cached_bytes: int
    layer_count: int
    layers_done: int
    layers_cached: int
    total_known: bool

    @property
    def remaining(self) -> int:
        return self.total_bytes - self.downloaded_bytes - self.cached_bytes


class Rollup(Totals, frozen=True, kw_only=True):
    """Every figure of a ``PullStatus`` that follows from its layers, by field name, so that
    ``PullStatus(**rollup.fields(), ...)`` builds it."""

    bytes_per_sec: float
    eta_seconds: float | None
    percent: float

    def fields(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


def totals(layers: Sequence[LayerStatus]) -> Totals:
    """A cached layer counts its size as cached and nothing as downloaded; a layer is done once
    it is cached or committed."""
    return Totals(
        total_bytes=sum(layer.total_bytes for layer in layers),
        downloaded_bytes=sum(layer.downloaded_bytes for layer in layers),
        cached_bytes=sum(layer.total_bytes for layer in layers if layer.cached),
        layer_count=len(layers),
        layers_done=sum(1 for layer in layers if layer.cached or layer.completed_at is not None),
        layers_cached=sum(1 for layer in layers if layer.cached),
        total_known=bool(layers) and all(layer.total_known for layer in layers),
    )


def share(have: int, total: int) -> float:
    """Percent of ``total`` that ``have`` is, capped at 100; 0 while the total is unknown."""
    if total <= 0:
        return 0.0
    return 100.0 if have >= total else 100.0 * have / total


def percent(phase: str, have: int, total: int, floor: float = 0.0) -> float:
    """``have`` of ``total`` bytes, never below ``floor`` (what was shown before: a layer that
    restarts does not move the bar back). A resolving pull is at 0: what its ingest says is
    about one blob, not the image. A completed one is at 100 whatever its bytes say."""
    if phase == "completed":
        return 100.0
    if phase == "resolving":
        return 0.0
    return max(floor, share(have, total))


def eta(phase: str, remaining: int, speed: float) -> float | None:
    """Seconds left: known only while pulling at a measured speed; 0 once completed."""
    if phase == "completed":
        return 0.0
    if phase != "pulling":
        return None
    left = eta_seconds(remaining, speed)
    # An estimate beyond the wire's bound (a crawl of a byte an hour) is no estimate.
    return left if left is not None and left <= ETA_MAX else None


def average_speed(downloaded: int, start: datetime | None, end: datetime | None) -> float:
    """A finished pull's speed: what it downloaded over how long it took."""
    if start is None or end is None:
        return 0.0
    seconds = (end - start).total_seconds()
    return downloaded / seconds if seconds > 0 else 0.0


def rollup(
    phase: str,
    layers: Sequence[LayerStatus],
    *,
    speed: float,
    started_at: datetime | None,
    completed_at: datetime | None,
    floor: float = 0.0,
) -> Rollup:
    """A pull's figures from its layers. ``speed`` is the measured speed of an active pull; a
    finished one shows its average from ``started_at`` to ``completed_at``. ``floor`` is the
    percent shown before."""
    sums = totals(layers)
    if phase not in ACTIVE_PHASES:
        speed = average_speed(sums.downloaded_bytes, started_at, completed_at)
    have = sums.downloaded_bytes + sums.cached_bytes
    return Rollup(
        **msgspec.structs.asdict(sums),
        bytes_per_sec=speed,
        eta_seconds=eta(phase, sums.remaining, speed),
        percent=percent(phase, have, sums.total_bytes, floor),
    )


def history_eta(pull: PullStatus, group: StatsGroup | None, now: datetime) -> float | None:
    """Seconds left for an active pull whose bytes do not flow yet (resolving, or pulling with
    no measured speed), from earlier pulls of its repository: their median duration less the
    time this one has taken so far. ``None`` once the pull has an ETA of its own, when no earlier
    pull is known, and past the median: an estimate already overdue says nothing."""
    if pull.phase not in ACTIVE_PHASES or pull.eta_seconds is not None:
        return None
    if group is None or group.count == 0 or group.duration_seconds.p50 <= 0:
        return None
    spent = (now - pull.started_at).total_seconds() if pull.started_at else 0.0
    left = group.duration_seconds.p50 - max(0.0, spent)
    return left if 0 < left <= ETA_MAX else None
