"""The fan-out's bookkeeping without sockets: what each client's next write holds."""

from __future__ import annotations

import zlib

import pytest

from pulltrace.collector.broker import (
    GZIP_HEADER,
    HEARTBEAT,
    WRITE_MAX,
    Broker,
    StreamUnavailable,
    Subscription,
)
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

    def progress(self, pull_id: str, done: int) -> None:
        """An event that leaves the snapshot as it was."""
        status = PullStatus(id=pull_id, node_name="n", downloaded_bytes=done)
        self.broker.publish(
            PullEvent(timestamp=T0, type="pull.progress", node_name="n", pull=status)
        )


def gunzip(*writes: bytes) -> bytes:
    """What a client's gzip decoder makes of a stream: the header, then the writes."""
    return zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(GZIP_HEADER + b"".join(writes))


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
    feed = Feed(ring_bytes=1)  # never less than the newest batch
    feed.publish("a")
    feed.broker.flush()
    feed.publish("b")
    feed.broker.flush()
    resumed = feed.broker.subscribe(str(FIRST + 1))
    assert ids(await resumed.next()) == [FIRST + 2]
    evicted = await feed.broker.subscribe(str(FIRST)).next()
    assert kinds(evicted) == ["snapshot"]


async def test_gzip_clients_share_each_compressed_piece_and_read_what_plain_ones_read() -> None:
    feed = Feed()
    feed.publish("a")
    plain = feed.broker.subscribe()
    zipped = [feed.broker.subscribe(gzip=True) for _ in range(2)]
    snapshot = await plain.next()
    firsts = [await z.next() for z in zipped]
    assert firsts[0] is firsts[1]
    for n in range(5):
        feed.progress("a", n)
    feed.broker.flush()
    batch = await plain.next()
    batches = [await z.next() for z in zipped]
    assert batches[0] is batches[1]  # compressed once for every gzip client
    assert gunzip(firsts[0], batches[0]) == snapshot + batch
    assert len(batches[0]) < len(batch)
    assert kinds(snapshot + batch) == ["snapshot"] + ["pull.progress"] * 5


async def test_a_gzip_client_resuming_mid_batch_gets_exactly_the_rest() -> None:
    feed = Feed()
    feed.publish("a")
    feed.publish("b")
    feed.broker.flush()
    sub = feed.broker.subscribe(str(FIRST + 1), gzip=True)
    feed.publish("c")
    feed.broker.flush()
    feed.broker.heartbeat()
    data = await sub.next()
    assert ids(gunzip(data)) == [FIRST + 2, FIRST + 3]
    assert gunzip(data).endswith(HEARTBEAT)


async def test_the_backlog_bound_counts_the_bytes_as_written() -> None:
    feed = Feed()
    plain = feed.broker.subscribe(str(FIRST))
    zipped = feed.broker.subscribe(str(FIRST), gzip=True)
    for _ in range(2):
        for n in range(20):
            feed.progress("a", n)
        feed.broker.flush()
        feed.broker.queue_bytes = len(feed.broker._ring[-1].plain)
    # Two batches: more than the bound plain, far less compressed.
    assert feed.broker.resyncs == 1
    assert kinds(await plain.next()) == ["snapshot"]
    assert ids(gunzip(await zipped.next())) == list(range(FIRST + 1, FIRST + 41))


async def test_a_resync_never_sends_more_than_the_backlog_it_drops() -> None:
    feed = Feed(queue_bytes=10)
    for n in range(50):
        feed.publish(f"pull-{n}")
    sub = feed.broker.subscribe()
    snapshot = await sub.next()
    n = 0
    while feed.broker.resyncs == 0:
        held = sub._size
        feed.progress("pull-0", n)
        n += 1
        feed.broker.flush()
    dropped = held + len(feed.broker._ring[-1].plain)
    assert dropped > len(snapshot) > 10 * feed.broker.queue_bytes
    feed.clock.advance(1.5)  # a fresh snapshot, not the first one and the events since
    assert len(await sub.next()) == len(snapshot)


async def test_a_snapshot_larger_than_the_bound_goes_out_in_slices_without_a_resync() -> None:
    feed = Feed(queue_bytes=10)
    feed.pulls = [PullStatus(id=f"p{n}", node_name="n", image_ref="x" * 4096) for n in range(800)]
    sub = feed.broker.subscribe()
    writes = [await sub.next()]
    assert len(writes[0]) == WRITE_MAX
    for n in range(3):
        feed.progress("p0", n)
        feed.broker.flush()
    while not writes[-1].endswith(b"\n\n") or kinds(writes[-1])[-1:] != ["pull.progress"]:
        writes.append(await sub.next())
    assert feed.broker.resyncs == 0 and feed.builds == 1
    stream = b"".join(writes)
    assert kinds(stream) == ["snapshot"] + ["pull.progress"] * 3
    assert stream.count(b'"image' + b'Ref":"x') == 800
