"""Windowed rate estimation shared by the agent and the collector.

A rate over a sliding window of cumulative samples, rather than the last two samples, keeps the
shown speed steady when polls jitter or when one layer finishes and the next has not started.
"""

from __future__ import annotations

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


def eta_seconds(remaining: int, rate: float) -> float | None:
    if remaining <= 0:
        return 0.0
    if rate <= 0:
        return None
    return remaining / rate
