"""The demo's history: a week of the simulated cluster and two DIUN notices, written through the
real store, give history, stats and updates to show."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from pulltrace.collector.history.base import HistoryQuery, SqlHistory
from pulltrace.collector.history.demo import seed_history
from pulltrace.sim import CATALOG, SimCluster, past_pulls
from tests.collector.conftest import Running

NOW = 1_800_000_000.0


def test_the_demo_has_history_stats_and_updates(open_history: Callable[..., SqlHistory]) -> None:
    history = open_history()
    nodes = [n.name for n in SimCluster(7, 20).nodes]
    written = seed_history(history, 7, nodes, NOW)
    assert written > 500  # a week at six pulls an hour
    page, after = history.query(HistoryQuery(limit=50))
    assert len(page) == 50 and after is not None
    assert all(p.phase in ("completed", "failed") and p.duration_seconds > 0 for p in page)
    groups = history.stats("image", NOW - 7 * 86400)
    assert {g.key for g in groups} <= {i.ref for i in CATALOG} and len(groups) > 5
    assert sum(g.failures for g in groups) > 0
    gpu = {g.key: g for g in history.stats("node", None)}["gpu-01"]
    slow = max(g.duration_seconds.p50 for g in history.stats("node", None))
    assert gpu.count > 0 and slow > 0
    updates = history.updates()
    assert len(updates) == 2 and not any(u.acknowledged for u in updates)
    assert {u.image for u in updates} <= {i.ref for i in CATALOG}


def test_the_past_is_a_function_of_the_seed() -> None:
    nodes = ["worker-01", "gpu-01"]
    assert past_pulls(3, nodes, NOW, 1) == past_pulls(3, nodes, NOW, 1)
    assert past_pulls(3, nodes, NOW, 1) != past_pulls(4, nodes, NOW, 1)
    assert all(p.completed_at and p.completed_at.timestamp() < NOW
               for p in past_pulls(3, nodes, NOW, 1))  # fmt: skip


async def test_a_demo_collector_serves_them(launch: Callable[..., Running]) -> None:
    running = launch(demo_history_seed=7)
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
        page = (await client.get("/api/v1/history?limit=10")).json()
        assert len(page["pulls"]) == 10 and page["continue"]
        stats = (await client.get("/api/v1/history/stats?by=image&since=7d")).json()
        assert len(stats["groups"]) > 5
        updates = (await client.get("/api/v1/updates")).json()["updates"]
        assert len(updates) == 2
