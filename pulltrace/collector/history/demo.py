"""A demo collector's history: the simulated cluster's past week and two DIUN notices, written
into a history database before the demo starts, so that ``pulltrace history``, ``stats`` and
``updates`` have something to show against ``--demo`` from its first second."""

from __future__ import annotations

from pulltrace.collector.history.base import HistoryBackend
from pulltrace.collector.history.recorder import finished_pull
from pulltrace.sim import diun_notices, past_pulls


def seed_history(
    backend: HistoryBackend, seed: int, nodes: list[str], now: float, days: float = 7.0
) -> int:
    """Writes the simulated past (and the notices); returns how many pulls."""
    pulls = [finished_pull(p) for p in past_pulls(seed, nodes, now, days)]
    backend.write(pulls)
    for notice in diun_notices(seed, now):
        backend.upsert_update(notice, now)
    return len(pulls)
