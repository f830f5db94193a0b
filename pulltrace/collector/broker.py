"""Server-sent events fan-out: every event encoded once, handed to every client in batches.

Each event becomes one SSE frame when the store emits it. Every ``flush`` (a short tick) closes
the frames since the last one into a batch and appends that batch to each client's queue, so
256 clients cost 256 appends a tick however many events there were. Nothing here ever awaits a
client: a client whose queue grows past its bound loses the backlog and, when it next writes,
gets a fresh snapshot instead. A ring of recent batches lets a client that reconnects with
``Last-Event-ID`` receive exactly what it missed.

Compression. Plain SSE at a few thousand nodes is megabytes a second per client, and writing
that to 256 sockets is most of a core in the kernel alone. A client that accepts gzip gets a
gzip stream whose body is a header and then a sequence of raw-deflate pieces, each made by a
fresh compressor flushed to a byte boundary (``Z_SYNC_FLUSH``): a piece refers to nothing
before it, so the same bytes can follow any other piece on any client's stream. Each batch is
compressed once, when the first gzip client needs it, and the same bytes go to every gzip
client, so compression costs per batch, not per client. Level 1: the frames repeat field names
and digests, which even the fastest level finds. The stream never ends with a gzip trailer
(the CRC would have to be computed per client); decoders accept a stream cut short.

A snapshot of thousands of pulls takes tens of milliseconds to encode (and as long again to
compress), so clients that join or resynchronise close together share one: a snapshot up to
``snapshot_max_age`` old is sent followed by the ring's batches since it, which is exactly the
current state. Every snapshot and every subscription closes the open batch first, so a client
is always up to date to the end of a batch and never needs part of one compressed for it alone.

Ids start at the wall clock in microseconds and count up, so a restarted collector's ids are
larger than any it handed out before, and a client resuming from an old process is given a
snapshot rather than somebody else's events.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import deque
from collections.abc import Callable

from pulltrace.model import NodeEventType, NodeStatus, PullEvent, PullStatus, StreamSnapshot, encode

HEARTBEAT = b": heartbeat\n\n"
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
"""What a gzip stream starts with: deflate, no name, no time, unknown OS."""
WRITE_MAX = 1 << 20
"""The most one write hands the server: a large snapshot goes out in slices, so that a slow
client holds one slice in its transport buffer, not a copy of the whole snapshot. A stalled
client holds about two copies of its last write (ours, and uvicorn's with the chunk framing):
about 1.5 MiB each (bench/collector_memory.py; 0.2 MiB with 64 KiB writes, 0.4 with 128).
Smaller writes are not worth it: uvicorn pauses a stream once a write is left in its buffer,
so a reader gets one write per turn or two of a busy event loop, and at 5 000 nodes one that
fell behind took seconds to tens of seconds to catch up (bench/collector_load.py's latency
maximum 9.5-38 s with 64 or 128 KiB writes, 1.1-5.5 s with 1 MiB, on a busy machine)."""

Piece = bytes | memoryview


def deflate(data: bytes) -> bytes:
    """A self-contained piece of a gzip stream, to follow any earlier piece on any stream."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


GZIP_HEARTBEAT = deflate(HEARTBEAT)


class StreamUnavailable(Exception):
    """No new client now (too many, or shutting down); the message is for the client."""


class _Encoded:
    """Bytes many clients are sent: compressed at most once, when a gzip client needs them."""

    __slots__ = ("_gzip", "plain")

    def __init__(self, plain: bytes) -> None:
        self.plain = plain
        self._gzip: bytes | None = None

    def data(self, gzip: bool) -> bytes:
        if not gzip:
            return self.plain
        if self._gzip is None:
            self._gzip = deflate(self.plain)
        return self._gzip

    def size(self, gzip: bool) -> int:
        """What ``data(gzip)`` is or will be, without compressing for it: the plain size stands
        for the compressed one not made yet."""
        return len(self._gzip if gzip and self._gzip is not None else self.plain)


class _Batch(_Encoded):
    """Consecutive frames, ids ``first`` to ``last``."""

    __slots__ = ("_ends", "first", "last")

    def __init__(self, first: int, frames: list[bytes]) -> None:
        super().__init__(b"".join(frames))
        self.first = first
        self.last = first + len(frames) - 1
        ends = []
        end = 0
        for frame in frames:
            end += len(frame)
            ends.append(end)
        self._ends = ends

    def after(self, since: int, gzip: bool) -> bytes:
        """The frames after ``since``; a client resuming from inside a batch (it lost the
        connection mid-write) gets that part compressed for it alone."""
        if since < self.first:
            return self.data(gzip)
        rest = self.plain[self._ends[since - self.first] :]
        return deflate(rest) if gzip else rest


class Subscription:
    """One client's queue. ``since`` is the id of the last event it has or will get."""

    __slots__ = (
        "_backlog",
        "_broker",
        "_head",
        "_size",
        "_waiter",
        "closed",
        "gzip",
        "resync",
        "since",
    )

    def __init__(self, broker: Broker, since: int, gzip: bool) -> None:
        self._broker = broker
        self._head: deque[Piece] = deque()
        """A snapshot being written: not backlog, so a snapshot larger than the bound does not
        resynchronise the client that is receiving it."""
        self._backlog: deque[Piece] = deque()
        self._size = 0
        """Bytes in the backlog, as they will be written (compressed for a gzip client)."""
        self._waiter: asyncio.Future[None] | None = None
        self.gzip = gzip
        self.since = since
        self.resync = True
        self.closed = False

    def offer(self, data: bytes, limit: int) -> None:
        """An empty backlog takes a piece whatever its size, so that one burst larger than the
        bound does not resynchronise a client that keeps up."""
        if self.resync or self.closed:
            return  # its snapshot, taken when it next writes, will cover this
        if self._backlog and self._size + len(data) > limit:
            self._drop()
            self.resync = True
            self._broker.resyncs += 1
        else:
            self._backlog.append(data)
            self._size += len(data)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    async def next(self) -> bytes | None:
        """What to write next (a snapshot when resynchronising), or None once closed."""
        while not self.closed:
            if self.resync:
                self.resync = False
                self._drop()
                self.since, pieces = self._broker.snapshot_frame(self.gzip)
                self._head.extend(pieces)
            if self._head or self._backlog:
                return self._take()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return None

    def _take(self) -> bytes:
        """Up to ``WRITE_MAX`` bytes: whole pieces joined, or a slice of one larger piece."""
        queue = self._head or self._backlog
        first = queue[0]
        taken: list[Piece]
        if len(first) > WRITE_MAX:
            view = first if isinstance(first, memoryview) else memoryview(first)
            queue[0] = view[WRITE_MAX:]
            taken = [view[:WRITE_MAX]]
        else:
            taken = [queue.popleft()]
            size = len(first)
            while queue and size + len(queue[0]) <= WRITE_MAX:
                size += len(queue[0])
                taken.append(queue.popleft())
        if queue is self._backlog:
            self._size -= sum(len(piece) for piece in taken)
        only = taken[0]
        return only if len(taken) == 1 and isinstance(only, bytes) else b"".join(taken)

    def _drop(self) -> None:
        self._head.clear()
        self._backlog.clear()
        self._size = 0

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Broker:
    """The ring keeps at most ``ring_size`` events and ``ring_bytes`` of plain frames (their
    compressed copies come on top), dropping whole batches, never the newest one."""

    def __init__(
        self,
        snapshot: Callable[[], list[PullStatus]],
        *,
        nodes: Callable[[], list[NodeStatus]] = list,
        max_clients: int = 256,
        ring_size: int = 16384,
        ring_bytes: int = 64 << 20,
        queue_bytes: int = 32 << 20,
        snapshot_max_age: float = 1.0,
        first_id: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._snapshot = snapshot
        self._nodes = nodes
        self.max_clients = max_clients
        self.queue_bytes = queue_bytes
        self._seq = time.time_ns() // 1000 if first_id is None else first_id
        self._ring: deque[_Batch] = deque()
        self._ring_size = ring_size
        self._ring_bytes = ring_bytes
        self._ring_frames = 0
        self._ring_used = 0
        self._pending: list[bytes] = []
        self._unsent: list[_Batch] = []
        """Batches closed since the last flush: the next flush hands them to every client."""
        self._clients: dict[Subscription, None] = {}
        self.snapshot_max_age = snapshot_max_age
        self._clock = clock
        self._cached: tuple[int, float, _Encoded] | None = None
        self._closed = False
        self.resyncs = 0
        """How many times a client's queue overflowed and it was resynchronised."""

    @property
    def last_id(self) -> int:
        return self._seq

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def publish(self, event: PullEvent) -> None:
        """The store's listener: encode once; the next flush closes it into a batch."""
        self._seq += 1
        frame = b"id: %d\nevent: %s\ndata: %s\n\n" % (self._seq, event.type.encode(), encode(event))
        self._pending.append(frame)

    def publish_node(self, kind: NodeEventType, status: NodeStatus) -> None:
        """A node's status changed: an event like any other, in the ring and resumable."""
        self._seq += 1
        frame = b"id: %d\nevent: %s\ndata: %s\n\n" % (self._seq, kind.encode(), encode(status))
        self._pending.append(frame)

    def subscribe(self, last_event_id: str | None = None, *, gzip: bool = False) -> Subscription:
        """A new client starts from a snapshot; a returning one from what it missed, when the
        ring still holds all of it and it is no larger than the backlog the client may have,
        else from a snapshot."""
        if self._closed:
            raise StreamUnavailable("the collector is shutting down")
        if len(self._clients) >= self.max_clients:
            raise StreamUnavailable(
                f"too many event stream clients (at most {self.max_clients}); try again later"
            )
        sub = Subscription(self, self._seq, gzip)
        if last_event_id is not None:
            missed = self._missed(_event_id(last_event_id), gzip)
            limit = self.limit(gzip)
            if missed is not None and sum(len(piece) for piece in missed) <= limit:
                sub.resync = False
                for piece in missed:
                    sub.offer(piece, limit)
        self._clients[sub] = None
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._clients.pop(sub, None)
        sub.close()

    def limit(self, gzip: bool) -> int:
        """A client's backlog bound: ``queue_bytes``, or the size of a snapshot when that is
        larger, so that the snapshot a resynchronisation sends is never larger than the
        backlog it replaces."""
        cached = self._cached
        return max(self.queue_bytes, cached[2].size(gzip) if cached is not None else 0)

    def flush(self) -> None:
        """The fan-out tick: the batches closed since the last flush, to every client that
        does not have them yet (one that joined since has some of them already)."""
        self._close()
        unsent = self._unsent
        if not unsent:
            return
        self._unsent = []
        last = unsent[-1].last
        limits = (self.limit(False), self.limit(True))
        for sub in self._clients:
            since = sub.since
            if sub.resync or since >= last:
                continue
            sub.since = last
            gzip = sub.gzip
            for batch in unsent:
                if batch.last > since:
                    sub.offer(batch.after(since, gzip), limits[gzip])

    def heartbeat(self) -> None:
        for sub in self._clients:
            sub.offer(GZIP_HEARTBEAT if sub.gzip else HEARTBEAT, self.limit(sub.gzip))

    def snapshot_frame(self, gzip: bool = False) -> tuple[int, list[bytes]]:
        """The current state: a ``snapshot`` event, then the batches since it was built; and the
        id of the last event that covers."""
        self._close()
        cached = self._cached
        now = self._clock()
        if cached is not None and now - cached[1] <= self.snapshot_max_age:
            seq, _, snapshot = cached
            since = self._missed(seq, gzip)
            if since is not None:
                return self._seq, [snapshot.data(gzip), *since]
        body = encode(StreamSnapshot(pulls=self._snapshot(), nodes=self._nodes()))
        snapshot = _Encoded(b"id: %d\nevent: snapshot\ndata: %s\n\n" % (self._seq, body))
        self._cached = (self._seq, now, snapshot)
        return self._seq, [snapshot.data(gzip)]

    def close(self) -> None:
        """Ends every stream, so that a graceful shutdown does not wait on them."""
        self._closed = True
        for sub in list(self._clients):
            sub.close()

    def _close(self) -> None:
        """The events since the last batch become one, in the ring and due to every client."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        batch = _Batch(self._seq - len(pending) + 1, pending)
        self._unsent.append(batch)
        ring = self._ring
        ring.append(batch)
        self._ring_frames += len(pending)
        self._ring_used += len(batch.plain)
        while len(ring) > 1 and (
            self._ring_frames > self._ring_size or self._ring_used > self._ring_bytes
        ):
            old = ring.popleft()
            self._ring_frames -= old.last - old.first + 1
            self._ring_used -= len(old.plain)

    def _missed(self, last: int | None, gzip: bool) -> list[bytes] | None:
        """The batches after ``last``, or None when the ring no longer holds them all."""
        self._close()
        if last == self._seq:
            return []
        ring = self._ring
        if last is None or not ring or not ring[0].first - 1 <= last < self._seq:
            return None
        pieces = []
        for batch in reversed(ring):
            if batch.last <= last:
                break
            pieces.append(batch.after(last, gzip))
        pieces.reverse()
        return pieces


def _event_id(text: str) -> int | None:
    """Ids are ours, so one that is not a number is from elsewhere: a snapshot answers it."""
    try:
        return int(text)
    except ValueError:
        return None
