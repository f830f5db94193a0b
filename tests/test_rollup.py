"""The one rule for a pull's figures, as the tracker, the demo and the collector apply it."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pulltrace import rollup
from pulltrace.model import ETA_MAX, LayerStatus, PullStatus, Quantiles, StatsGroup

T0 = datetime(2026, 1, 15, 9, 40, tzinfo=UTC)
PHASES = ("resolving", "pulling", "completed", "failed", "stale")


def layer(total: int, done: int = 0, *, cached: bool = False, known: bool = True) -> LayerStatus:
    return LayerStatus(
        digest=f"sha256:{total}-{done}-{cached}",
        total_bytes=total,
        downloaded_bytes=0 if cached else done,
        completed_at=T0 if done >= total and not cached else None,
        cached=cached,
        total_known=known,
    )


def test_totals_count_cached_apart_from_downloaded() -> None:
    sums = rollup.totals([layer(4000, cached=True), layer(1000, 10), layer(2000, 2000)])
    assert sums == rollup.Totals(
        total_bytes=7000,
        downloaded_bytes=2010,
        cached_bytes=4000,
        layer_count=3,
        layers_done=2,
        layers_cached=1,
        total_known=True,
    )
    assert sums.remaining == 990
    assert not rollup.totals([]).total_known
    assert not rollup.totals([layer(10), layer(0, known=False)]).total_known


def test_percent_by_phase() -> None:
    assert rollup.percent("pulling", 4010, 5000) == pytest.approx(80.2)
    assert rollup.percent("pulling", 10, 100, floor=30.0) == 30.0, "never goes back"
    assert rollup.percent("pulling", 10, 0) == 0.0, "no total yet"
    assert rollup.percent("resolving", 1200, 1200) == 0.0, "one blob is not the image"
    assert rollup.percent("completed", 0, 5000) == 100.0
    assert rollup.percent("failed", 6000, 5000) == 100.0


def test_eta_only_while_pulling_at_a_known_speed() -> None:
    assert rollup.eta("pulling", 100, 50.0) == 2.0
    assert rollup.eta("pulling", 100, 0.0) is None
    assert rollup.eta("pulling", 0, 0.0) == 0.0
    assert rollup.eta("completed", 100, 0.0) == 0.0
    assert [rollup.eta(p, 100, 50.0) for p in ("resolving", "failed", "stale")] == [None] * 3


def test_a_finished_pull_shows_its_average_speed() -> None:
    layers = [layer(1000, 1000), layer(3000, 3000)]
    done = rollup.rollup(
        "completed", layers, speed=9e9, started_at=T0, completed_at=T0 + timedelta(seconds=8)
    )
    assert done.bytes_per_sec == 500.0 and done.percent == 100.0 and done.eta_seconds == 0.0
    active = rollup.rollup(
        "pulling", [layer(1000, 500)], speed=50.0, started_at=T0, completed_at=None
    )
    assert active.bytes_per_sec == 50.0 and active.eta_seconds == 10.0
    assert rollup.average_speed(100, T0, None) == 0.0 and rollup.average_speed(100, T0, T0) == 0.0


sizes = st.integers(min_value=0, max_value=2**63 - 1)


@given(
    st.sampled_from(PHASES),
    st.lists(st.tuples(sizes, sizes, st.booleans()), max_size=20),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    st.floats(min_value=0, max_value=100),
)
def test_figures_stay_in_range(
    phase: str, shapes: list[tuple[int, int, bool]], speed: float, floor: float
) -> None:
    layers = [layer(total, min(done, total), cached=cached) for total, done, cached in shapes]
    end = T0 + timedelta(seconds=3) if phase not in ("resolving", "pulling") else None
    r = rollup.rollup(phase, layers, speed=speed, started_at=T0, completed_at=end, floor=floor)
    assert 0.0 <= r.percent <= 100.0 and not math.isnan(r.percent)
    assert r.percent >= floor or phase == "resolving"
    assert r.eta_seconds is None or r.eta_seconds >= 0
    assert r.bytes_per_sec >= 0 and not math.isnan(r.bytes_per_sec)
    assert r.downloaded_bytes + r.cached_bytes <= r.total_bytes
    assert r.layers_cached <= r.layers_done <= r.layer_count == len(layers)


def stats_group(p50: float, count: int = 14) -> StatsGroup:
    q = Quantiles(p50=p50, p95=p50 * 2, max=p50 * 3)
    return StatsGroup(
        key="docker.io/library/nginx",
        count=count,
        failures=0,
        bytes=0,
        duration_seconds=q,
        average_bytes_per_sec=q,
    )


def waiting(phase: str, spent: float, eta: float | None = None) -> PullStatus:
    return PullStatus(
        id="p",
        node_name="n",
        phase=phase,  # type: ignore[arg-type]
        started_at=T0 - timedelta(seconds=spent),
        eta_seconds=eta,
    )


def test_history_eta_is_the_median_less_the_time_spent_before_bytes_flow() -> None:
    group = stats_group(100.0)
    assert rollup.history_eta(waiting("resolving", 0), group, T0) == 100.0
    assert rollup.history_eta(waiting("pulling", 40), group, T0) == 60.0
    no_start = msgspec.structs.replace(waiting("resolving", 0), started_at=None)
    assert rollup.history_eta(no_start, group, T0) == 100.0


def test_history_eta_gives_way_to_the_pulls_own_and_says_nothing_it_cannot_know() -> None:
    group = stats_group(100.0)
    assert rollup.history_eta(waiting("pulling", 10, eta=5.0), group, T0) is None
    assert rollup.history_eta(waiting("completed", 10), group, T0) is None
    assert rollup.history_eta(waiting("failed", 10), group, T0) is None
    assert rollup.history_eta(waiting("resolving", 10), None, T0) is None
    assert rollup.history_eta(waiting("resolving", 10), stats_group(100.0, count=0), T0) is None
    assert rollup.history_eta(waiting("resolving", 0), stats_group(0.0), T0) is None
    assert rollup.history_eta(waiting("resolving", 100), group, T0) is None  # overdue


@given(
    phase=st.sampled_from(PHASES),
    spent=st.floats(-1e9, 1e9),
    p50=st.floats(0, 1e12),
    count=st.integers(0, 10**9),
)
def test_history_eta_is_none_or_a_bounded_time_left(
    phase: str, spent: float, p50: float, count: int
) -> None:
    left = rollup.history_eta(waiting(phase, spent), stats_group(p50, count), T0)
    assert left is None or 0 < left <= min(p50, ETA_MAX)
