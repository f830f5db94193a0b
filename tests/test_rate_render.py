from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pulltrace import render
from pulltrace.model import PullStatus
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


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (5 * 1024**2 + 1, "5.0 MiB"),
        (3 << 40, "3.0 TiB"),
    ],
)
def test_human_bytes(n: int, text: str) -> None:
    assert render.human_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "-"), (0.4, "0s"), (59, "59s"), (61, "1m01s"), (7322, "2h02m")]
)
def test_human_duration(seconds: float | None, text: str) -> None:
    assert render.human_duration(seconds) == text


def test_bar_is_clamped_and_fixed_width() -> None:
    assert render.bar(50, 10) == "█████░░░░░"
    assert render.bar(150, 4) == "████"
    assert render.bar(-3, 4) == "░░░░"


def test_cells_for_a_finished_pull() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    pull = PullStatus(
        id="x",
        node_name="n",
        phase="completed",
        total_bytes=2048,
        downloaded_bytes=1024,
        cached_bytes=1024,
        total_known=True,
        started_at=start,
        completed_at=start + timedelta(seconds=75),
    )
    assert render.size_cell(pull) == "2.0 KiB / 2.0 KiB (1.0 KiB cached)"
    assert render.eta_cell(pull) == "1m15s"
    assert render.human_speed(pull.bytes_per_sec) == "-"
    assert render.image_name(pull) == "<unknown>"
