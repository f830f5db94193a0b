"""The fan-out's bookkeeping without sockets: what each client's next write holds."""

from __future__ import annotations

import pytest

from pulltrace.collector.broker import HEARTBEAT, Broker, StreamUnavailable, Subscription
from pulltrace.model import PullEvent, PullStatus
from tests.collector.conftest import T0, Clock

FIRST = 1000


class Feed:
    def __init__(self, **kw: object) -> None:
        self.pulls: list[PullStatus] = []
        self.builds = 0
        self.clock = Clock(0.0)
        self.broker = Broker(self.snapshot, first_id=FIRST, clock=self.clock, **kw)  # type: ignore[arg-type]

    def snapshot(self) -> list[PullStatus]:
        self.builds += 1
        return list(self.pulls)

    def publish(self, pull_id: str) -> None:
        status = PullStatus(id=pull_id, node_name="n")
        self.pulls.append(status)
        event = PullEvent(timestamp=T0, type="pull.started", node_name="n", pull=status)
        self.broker.publish(event)


def ids(data: bytes) -> list[int]:
    return [int(line[4:]) for line in data.split(b"\n") if line.startswith(b"id: ")]


def kinds(data: bytes) -> list[str]:
    return [line[7:].decode() for line in data.split(b"\n") if line.startswith(b"event: ")]


async def test_a_new_client_gets_a_snapshot_then_batches() -> None:
    feed = Feed()
    sub = feed.broker.subscribe()
    first = await sub.next()
    assert kinds(first) == ["snapshot"] and ids(first) == [FIRST]
    feed.publish("a")
    feed.publish("b")
    feed.broker.flush()
    batch = await sub.next()
    assert ids(batch) == [FIRST + 1, FIRST + 2] and kinds(batch) == ["pull.started"] * 2


async def test_clients_close_together_share_one_snapshot_followed_by_the_events_since() -> None:
    feed = Feed()
    early = feed.broker.subscribe()
    await early.next()
    feed.publish("a")
    late = feed.broker.subscribe()
    data = await late.next()
    assert feed.builds == 1
    assert kinds(data) == ["snapshot", "pull.started"] and ids(data) == [FIRST, FIRST + 1]
    assert late.since == FIRST + 1
    feed.publish("b")
    feed.broker.flush()
    assert ids(await late.next()) == [FIRST + 2]  # not "a" again
    assert ids(await early.next()) == [FIRST + 1, FIRST + 2]
    feed.clock.advance(1.5)  # too old to share: built afresh
    fresh = await feed.broker.subscribe().next()
    assert feed.builds == 2 and kinds(fresh) == ["snapshot"] and ids(fresh) == [FIRST + 2]


async def test_a_resuming_client_gets_only_what_it_missed_even_mid_batch() -> None:
    feed = Feed()
    feed.publish("a")
    feed.broker.flush()
    feed.publish("b")
    sub = feed.broker.subscribe(str(FIRST + 1))
    feed.publish("c")
    feed.broker.flush()
    data = await sub.next()
    assert ids(data) == [FIRST + 2, FIRST + 3]
    assert feed.builds == 0


@pytest.mark.parametrize("last", [str(FIRST - 5), "x", str(FIRST + 99)])
async def test_an_unknown_or_evicted_id_gets_a_snapshot(last: str) -> None:
    feed = Feed(ring_size=2)
    for name in "abc":
        feed.publish(name)
    data = await feed.broker.subscribe(last).next()
    assert kinds(data) == ["snapshot"] and ids(data) == [FIRST + 3]


async def test_an_overflowing_client_loses_its_backlog_for_a_snapshot() -> None:
    feed = Feed(queue_bytes=10)
    slow = feed.broker.subscribe(str(FIRST))
    feed.publish("a")
    feed.broker.flush()  # an empty queue takes one chunk, whatever its size
    assert feed.broker.resyncs == 0
    feed.publish("b")
    feed.broker.flush()
    assert feed.broker.resyncs == 1
    feed.publish("c")
    feed.broker.flush()
    feed.broker.heartbeat()
    data = await slow.next()
    assert kinds(data) == ["snapshot"] and ids(data) == [FIRST + 3]
    assert data.count(b'"id":"') == 3


async def test_heartbeats_limits_and_close() -> None:
    feed = Feed(max_clients=2)
    subs: list[Subscription] = [feed.broker.subscribe(str(FIRST)) for _ in range(2)]
    with pytest.raises(StreamUnavailable, match="at most 2"):
        feed.broker.subscribe()
    feed.broker.heartbeat()
    assert await subs[0].next() == HEARTBEAT
    feed.broker.unsubscribe(subs[0])
    assert feed.broker.client_count == 1
    feed.broker.close()
    assert await subs[1].next() is None
    with pytest.raises(StreamUnavailable, match="shutting down"):
        feed.broker.subscribe()


async def test_the_ring_is_bounded_in_bytes_as_well_as_in_frames() -> None:
    feed = Feed(ring_bytes=1)  # never less than the newest frame
    feed.publish("a")
    feed.publish("b")
    resumed = feed.broker.subscribe(str(FIRST + 1))
    feed.broker.flush()
    assert ids(await resumed.next()) == [FIRST + 2]
    evicted = await feed.broker.subscribe(str(FIRST)).next()
    assert kinds(evicted) == ["snapshot"]
