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

    def list_once(self) -> Snapshot:
        """The cluster right after the warm-up: what ``watch --demo`` opens on, as its stream
        would have brought it to a watcher."""
        from pulltrace.client.store import ClientStore

        run = _Run(self)
        store = ClientStore()
        store.apply(run.snapshot())
        while run.t + STEP <= run.warm_until:
            for message in run.step():
                store.apply(message)
        return Snapshot(store.pulls(), list((store.nodes or {}).values()))

    async def __aiter__(self) -> AsyncIterator[Message]:
        run = _Run(self)
        yield ConnectionState("live", "simulated cluster")
        yield run.snapshot()
        while True:
            if run.t + STEP > run.warm_until:
                self.warm = True
                if not self.follow:
                    await asyncio.Event().wait()
                await self.sleep(max(0.0, run.t + STEP - self.clock()))
            else:
                await asyncio.sleep(0)
            for message in run.step():
                yield message


class _Run:
    """One simulated cluster and the collector store it reports to, stepped by hand."""

    def __init__(self, source: DemoSource) -> None:
        from pulltrace.pullstore import PullStore

        self.t = source.start if source.start is not None else source.clock() - source.warmup
        self.warm_until = self.t + source.warmup
        self.cluster = SimCluster(source.seed, source.nodes, start=self.t)
        self.store = PullStore(correlator=self.cluster.pods, clock=lambda: self.t)
        self.pending: list[Event | NodeUpdate] = []
        self.store.add_listener(lambda event: self.pending.append(Event(event)))
        self.store.add_node_listener(
            lambda change: self.pending.append(
                NodeUpdate(change.status, removed=change.kind == "node.removed")
            )
        )

    def snapshot(self) -> Snapshot:
        return Snapshot(self.store.pulls(), self.store.nodes())

    def step(self) -> list[Event | NodeUpdate]:
        self.t += STEP
        for report in self.cluster.step(self.t):
            self.store.apply_report(report)
        self.store.tick()
        messages, self.pending = self.pending, []
        return messages
