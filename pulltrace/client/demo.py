"""``--demo``: the simulated cluster of ``pulltrace.sim`` run through the real collector merge.

Agents' reports go into the collector's own ``PullStore`` and the view gets that store's
events, so the demo shows exactly what a real collector would send for the same traffic. A
warm-up replays the first minutes at once (yielding to the event loop between steps so the UI
stays responsive), so the screen opens on a busy cluster with history in its sparklines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from pulltrace.client.source import ConnectionState, Event, Message, NodeUpdate, Snapshot
from pulltrace.sim import SimCluster

DEFAULT_SEED = 7
STEP = 0.5


class DemoSource:
    """``follow=False`` stops the clock after the warm-up (for screenshots and tests): the
    source then stays connected but silent. ``warm`` turns true once the warm-up is yielded."""

    def __init__(
        self,
        seed: int = DEFAULT_SEED,
        nodes: int = 20,
        *,
        start: float | None = None,
        warmup: float = 90.0,
        follow: bool = True,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.seed = seed
        self.nodes = nodes
        self.start = start
        self.warmup = warmup
        self.follow = follow
        self.clock = clock
        self.sleep = sleep
        self.warm = False

    @property
    def description(self) -> str:
        return f"demo, seed {self.seed}, {self.nodes} nodes"

    @property
    def context(self) -> str:
        return "demo"

    async def __aiter__(self) -> AsyncIterator[Message]:
        from pulltrace.pullstore import PullStore

        t = self.start if self.start is not None else self.clock() - self.warmup
        warm_until = t + self.warmup
        cluster = SimCluster(self.seed, self.nodes, start=t)
        sim_now = [t]
        store = PullStore(correlator=cluster.pods, clock=lambda: sim_now[0])
        pending: list[Message] = []
        store.add_listener(lambda event: pending.append(Event(event)))
        store.add_node_listener(
            lambda change: pending.append(
                NodeUpdate(change.status, removed=change.kind == "node.removed")
            )
        )
        yield ConnectionState("live", "simulated cluster")
        yield Snapshot(store.pulls(), store.nodes())
        while True:
            t += STEP
            if t > warm_until:
                self.warm = True
                if not self.follow:
                    await asyncio.Event().wait()
                await self.sleep(max(0.0, t - self.clock()))
            else:
                await asyncio.sleep(0)
            sim_now[0] = t
            for report in cluster.step(t):
                store.apply_report(report)
            store.tick()
            for message in pending:
                yield message
            pending.clear()
