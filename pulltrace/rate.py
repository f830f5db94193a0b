"""Windowed rate estimation shared by the agent and the collector.

A rate over a sliding window of cumulative samples, rather than the last two samples, keeps the
shown speed steady when polls jitter or when one layer finishes and the next has not started.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque


class RateWindow:
    """Bytes per second from cumulative (time, bytes) samples over the last ``window`` seconds."""

    __slots__ = ("_samples", "window")

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, t: float, value: int) -> None:
        samples = self._samples
        if samples and t <= samples[-1][0]:
            if value > samples[-1][1]:
                samples[-1] = (samples[-1][0], value)
            return
        samples.append((t, value))
        # Keep one sample older than the window so the estimate spans the whole window.
        while len(samples) > 2 and samples[1][0] <= t - self.window:
            samples.popleft()

    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        if t1 <= t0 or v1 <= v0:
            return 0.0
        return (v1 - v0) / (t1 - t0)

    def __len__(self) -> int:
        return len(self._samples)


class Trajectory:
    """One blob's bytes against containerd's clock.

    containerd writes an ingest in 1 MiB steps and stamps each step's ``updated_at``, so the
    byte count is exact at those instants and nearly linear between them. Reading the count at
    an instant between two stamps (``at``) is how a whole pull's bytes are added up at one
    moment, whichever moments we happened to poll at.
    """

    __slots__ = ("_times", "_values")

    def __init__(self) -> None:
        self._times: list[float] = []
        self._values: list[int] = []

    def add(self, t: float, value: int) -> None:
        """A stamped point; ignored unless it is later and no smaller than the last one."""
        if self._times and (t <= self._times[-1] or value < self._values[-1]):
            return
        self._times.append(t)
        self._values.append(value)

    @property
    def first(self) -> float:
        return self._times[0]

    @property
    def last(self) -> tuple[float, int] | None:
        return (self._times[-1], self._values[-1]) if self._times else None

    def at(self, t: float) -> float:
        """Bytes at ``t``: the first point's value before it, the last one's after it."""
        times, values = self._times, self._values
        if not times:
            return 0.0
        i = bisect_right(times, t)
        if i == 0:
            return float(values[0])
        if i == len(times):
            return float(values[-1])
        t0, t1, v0 = times[i - 1], times[i], values[i - 1]
        return v0 + (values[i] - v0) * (t - t0) / (t1 - t0)

    def forget_before(self, t: float) -> None:
        """Drops points no later reading needs: all before ``t`` but the last of them."""
        i = bisect_right(self._times, t) - 1
        if i > 0:
            del self._times[:i]
            del self._values[:i]

    def __len__(self) -> int:
        return len(self._times)


def eta_seconds(remaining: int, rate: float) -> float | None:
    if remaining <= 0:
        return 0.0
    if rate <= 0:
        return None
    return remaining / rate
