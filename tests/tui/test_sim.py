"""The simulator must be reproducible (screenshots, snapshots) and realistic enough to show
every situation the UI handles."""

from __future__ import annotations

import asyncio

from pulltrace.client.demo import DemoSource
from pulltrace.client.source import ConnectionState, Event, Message, Snapshot
from pulltrace.model import AgentReport, encode
from pulltrace.sim import SimCluster
from tests.tui.conftest import START


def run(seed: int, seconds: float = 60.0) -> list[AgentReport]:
    cluster = SimCluster(seed, start=START)
    reports: list[AgentReport] = []
    t = START
    while t < START + seconds:
        t += 0.5
        reports = cluster.step(t)
    return reports


def test_same_seed_same_reports() -> None:
    a, b = run(3), run(3)
    assert [encode(r) for r in a] == [encode(r) for r in b]
    assert [encode(r) for r in a] != [encode(r) for r in run(4)]


def test_cluster_shows_the_situations_the_ui_is_for() -> None:
    reports = run(7, 90.0)
    assert len(reports) == 20
    pulls = [p for r in reports for p in r.pulls]
    phases = {p.phase for p in pulls}
    assert {"pulling", "completed", "failed"} <= phases
    assert any(p.cached_bytes for p in pulls), "shared base layers are cached on some nodes"
    assert all(p.total_known and p.layer_count == len(p.layers) for p in pulls)
    failed = next(p for p in pulls if p.phase == "failed")
    assert "aborted" in failed.error and failed.completed_at is not None
    rollout = [p for p in pulls if "checkout-api" in p.repository]
    assert len({p.node_name for p in rollout}) >= 5
    for p in pulls:
        assert 0 <= p.percent <= 100 and p.downloaded_bytes + p.cached_bytes <= p.total_bytes


def test_pods_are_found_the_way_the_collector_asks() -> None:
    cluster = SimCluster(7, start=START)
    pull = cluster.step(START + 1)[0].pulls[0]
    pods, ref = cluster.pods.match(pull.node_name, pull.repository, pull.manifest_digest)
    assert pods and ref.startswith(pull.repository + ":")
    assert cluster.pods.match("nowhere", "x", "y") == ([], "")


async def test_demo_source_goes_through_the_collector_store() -> None:
    source = DemoSource(seed=7, start=START, warmup=10.0, follow=False)
    messages: list[Message] = []

    async def consume() -> None:
        async for message in source:
            messages.append(message)

    task = asyncio.create_task(consume())
    while not source.warm:
        await asyncio.sleep(0)
    task.cancel()
    assert isinstance(messages[0], ConnectionState) and messages[0].state == "live"
    assert isinstance(messages[1], Snapshot)
    events = [m.event for m in messages if isinstance(m, Event)]
    kinds = {e.type for e in events}
    assert {"pull.started", "pull.progress", "layer.completed"} <= kinds
    started = next(e for e in events if e.type == "pull.started")
    assert started.pull.pods, "the collector matched the simulated pods"
    assert ":" in started.pull.image_ref.rsplit("/", 1)[-1], "tagged reference from the pods"


def test_one_worker_at_a_time_loses_containerd_and_its_pulls_stand_still() -> None:
    from pulltrace.pullstore import PullStore
    from pulltrace.sim import OUTAGE_AFTER, OUTAGE_FOR

    cluster = SimCluster(7, start=START)
    store = PullStore(correlator=cluster.pods, clock=lambda: cluster.now)
    states: list[tuple[str, str]] = []
    store.add_node_listener(lambda c: states.append((c.status.node_name, c.status.state)))
    during: list[dict[str, tuple[int, float]]] = []
    t = START
    while t < START + OUTAGE_AFTER + OUTAGE_FOR + 5:
        t += 0.5
        for report in cluster.step(t):
            store.apply_report(report)
            if not report.containerd_reachable:
                during.append(
                    {
                        p.id: (p.downloaded_bytes, p.bytes_per_sec)
                        for p in report.pulls
                        if p.phase == "pulling"
                    }
                )
        store.tick()
    down = {name for name, state in states if state == "degraded"}
    assert len(down) == 1, states
    (node,) = down
    assert [state for name, state in states if name == node] == ["ready", "degraded", "ready"]
    assert all(state == "ready" for name, state in states if name != node)
    assert len(during) == OUTAGE_FOR / 0.5 and during[0], "the node had pulls in flight"
    assert during[0] == during[-1] and {speed for _, speed in during[0].values()} == {0.0}
