"""The rate window and a blob's trajectory on containerd's clock."""

from __future__ import annotations

import pytest

from pulltrace.rate import RateWindow, Trajectory, eta_seconds


def test_rate_spans_the_window_and_ignores_older_samples() -> None:
    window = RateWindow(window=5.0)
    for t in range(10):
        window.add(float(t), 100 * t if t < 5 else 400 + 300 * (t - 4))
    assert window.rate() == pytest.approx(300.0)


def test_rate_is_zero_until_two_samples_and_when_stalled() -> None:
    window = RateWindow(window=2.0)
    window.add(0.0, 10)
    assert window.rate() == 0.0
    for t in range(1, 5):
        window.add(float(t), 50)
    assert window.rate() == 0.0


def test_rate_keeps_the_larger_value_for_a_repeated_timestamp() -> None:
    window = RateWindow()
    window.add(0.0, 0)
    window.add(1.0, 10)
    window.add(1.0, 30)
    assert window.rate() == 30.0


def test_trajectory_is_exact_at_its_points_and_linear_between() -> None:
    path = Trajectory()
    assert path.at(5.0) == 0.0 and path.last is None
    for t, v in ((10.0, 0), (12.0, 1000), (12.0, 5000), (11.0, 9000), (14.0, 2000)):
        path.add(t, v)  # a repeated, earlier or smaller point is ignored
    assert path.last == (14.0, 2000) and len(path) == 3
    assert [path.at(t) for t in (9.0, 10.0, 11.0, 12.0, 13.5, 20.0)] == [
        0.0,
        0.0,
        500.0,
        1000.0,
        1750.0,
        2000.0,
    ]
    path.forget_before(13.0)
    assert len(path) == 2 and path.at(13.5) == 1750.0 and path.first == 12.0


def test_eta() -> None:
    assert eta_seconds(100, 50.0) == 2.0
    assert eta_seconds(0, 0.0) == 0.0
    assert eta_seconds(10, 0.0) is None
