"""Per-group, per-day sums that answer ``stats`` without reading every pull.

Reading a million pulls to sort their durations takes seconds; the rollups hold, for each
image, node and repository and each UTC day (and once more for all time, ``day = ALL``), the
count, failures, bytes, maxima, and log-scale histograms of duration and average speed. Stats
over a window add up its whole days' rows (and read the pulls of the partial first day
themselves); quantiles come from the histograms, within ``RELATIVE_ERROR`` (2.5 %) of the
exact nearest-rank value, while counts, failures, bytes and maxima are exact.

The writer keeps them in step in the same transaction as the pulls: a pull's row counts once,
when it is first inserted (a later upsert, say with pods matched late, changes none of these
figures), and pruning subtracts what it deletes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from pulltrace.model import Quantiles, StatsGroup

DAY = 86400
ALL = -1
"""The ``day`` of the all-time rows."""
DIMENSIONS = ("image", "node", "repository")
FACTOR = 1.05
RELATIVE_ERROR = math.sqrt(FACTOR) - 1
"""A bucket's representative (its geometric middle) is this close to any value in it: 2.5 %,
well inside what a pull's duration varies by from one run to the next. Coarser buckets are
fewer to add up: a stats query's cost is mostly adding histograms."""
ZERO = -(10**6)
"""The bucket of zero (a pull with no duration or speed)."""
_LOG = math.log(FACTOR)
_hist = msgspec.json.Decoder(dict[int, int])
_encode = msgspec.json.Encoder().encode

# (image, node, repository, phase, finished_at, downloaded, duration, avg_speed)
Fact = tuple[str, str, str, str, float, int, float, float]
Key = tuple[str, str, int]
"""(dimension, group key, day)."""


def bucket(value: float) -> int:
    if value <= 0 or value == math.inf or value != value:
        return ZERO
    return math.floor(math.log(value) / _LOG)


def representative(b: int) -> float:
    return 0.0 if b == ZERO else float(FACTOR ** (b + 0.5))


@dataclass(slots=True)
class Roll:
    count: int = 0
    failures: int = 0
    bytes: int = 0
    duration_max: float = 0.0
    speed_max: float = 0.0
    durations: Counter[int] = field(default_factory=Counter)
    speeds: Counter[int] = field(default_factory=Counter)

    def add(self, failed: bool, downloaded: int, duration: float, speed: float) -> None:
        self.count += 1
        self.failures += failed
        self.bytes += downloaded
        if duration > self.duration_max:
            self.duration_max = duration
        if speed > self.speed_max:
            self.speed_max = speed
        self.durations[bucket(duration)] += 1
        self.speeds[bucket(speed)] += 1

    def merge(self, other: Roll, sign: int = 1) -> None:
        """Adds (or with ``sign=-1`` takes away) another roll; maxima only grow here, the
        caller recomputes them after taking away."""
        self.count += sign * other.count
        self.failures += sign * other.failures
        self.bytes += sign * other.bytes
        if sign > 0:
            self.duration_max = max(self.duration_max, other.duration_max)
            self.speed_max = max(self.speed_max, other.speed_max)
            self.durations.update(other.durations)
            self.speeds.update(other.speeds)
            return
        for mine, theirs in ((self.durations, other.durations), (self.speeds, other.speeds)):
            mine.subtract(theirs)
            for b in [b for b, n in mine.items() if n <= 0]:
                del mine[b]

    def row(self) -> tuple[Any, ...]:
        return (self.count, self.failures, self.bytes, self.duration_max, self.speed_max,
                _encode(self.durations).decode(), _encode(self.speeds).decode())  # fmt: skip

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Roll:
        count, failures, size, duration_max, speed_max, durations, speeds = row
        return cls(int(count), int(failures), int(size), float(duration_max), float(speed_max),
                   Counter(_hist.decode(durations)), Counter(_hist.decode(speeds)))  # fmt: skip

    def group(self, key: str) -> StatsGroup:
        return StatsGroup(
            key=key,
            count=self.count,
            failures=self.failures,
            bytes=self.bytes,
            duration_seconds=_quantiles(self.durations, self.count, self.duration_max),
            average_bytes_per_sec=_quantiles(self.speeds, self.count, self.speed_max),
        )


def _quantiles(hist: Counter[int], count: int, top: float) -> Quantiles:
    return Quantiles(p50=_rank(hist, count, 0.5, top), p95=_rank(hist, count, 0.95, top), max=top)


def _rank(hist: Counter[int], count: int, q: float, top: float) -> float:
    """The nearest-rank quantile's bucket, as its representative (never above the maximum)."""
    if count <= 0:
        return 0.0
    rank = max(1, math.ceil(q * count))
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return min(representative(b), top)
    return top


def roll_up(facts: Iterable[Fact], *, days: bool = True) -> dict[Key, Roll]:
    """Each fact counted in its groups' all-time rows, and (with ``days``) their day rows."""
    rolls: dict[Key, Roll] = {}
    for image, node, repository, phase, finished_at, downloaded, duration, speed in facts:
        day = int(finished_at // DAY)
        failed = phase == "failed"
        for dim, key in (("image", image), ("node", node), ("repository", repository)):
            for when in (ALL, day) if days else (ALL,):
                roll = rolls.get((dim, key, when))
                if roll is None:
                    roll = rolls[(dim, key, when)] = Roll()
                roll.add(failed, downloaded, duration, speed)
    return rolls


def group_facts(facts: Iterable[tuple[str, str, int, float, float]]) -> dict[str, Roll]:
    """(key, phase, downloaded, duration, speed) rows of the pulls themselves, by key."""
    rolls: dict[str, Roll] = {}
    for key, phase, downloaded, duration, speed in facts:
        roll = rolls.get(key)
        if roll is None:
            roll = rolls[key] = Roll()
        roll.add(phase == "failed", downloaded, duration, speed)
    return rolls
