"""Server-sent events fan-out: every event encoded once, handed to every client in batches.

Each event becomes one SSE frame when the store emits it. Every ``flush`` (a short tick) joins
the frames since the last one into one chunk and appends that chunk to each client's queue, so
256 clients cost 256 appends a tick however many events there were. Nothing here ever awaits a
client: a client whose queue grows past its byte bound loses the backlog and, when it next
writes, gets a fresh snapshot instead. A ring of recent frames lets a client that reconnects
with ``Last-Event-ID`` receive exactly what it missed.

A snapshot of thousands of pulls takes tens of milliseconds to encode, so clients that join or
resynchronise close together share one: a snapshot up to ``snapshot_max_age`` old is sent
followed by the ring's frames since it, which is exactly the current state.

Ids start at the wall clock in microseconds and count up, so a restarted collector's ids are
larger than any it handed out before, and a client resuming from an old process is given a
snapshot rather than somebody else's events.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from itertools import islice

from pulltrace.model import PullEvent, PullList, PullStatus, encode

HEARTBEAT = b": heartbeat\n\n"


class StreamUnavailable(Exception):
    """No new client now (too many, or shutting down); the message is for the client."""


class Subscription:
    """One client's queue. ``since`` is the id of the last event it has or will get."""

    __slots__ = ("_broker", "_chunks", "_size", "_waiter", "closed", "resync", "since")

    def __init__(self, broker: Broker, since: int) -> None:
        self._broker = broker
        self._chunks: list[bytes] = []
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self.since = since
        self.resync = True
        self.closed = False

    def offer(self, data: bytes, limit: int) -> None:
        """An empty queue takes a chunk whatever its size, so that one burst larger than the
        bound does not resynchronise a client that keeps up."""
        if self.resync or self.closed:
            return  # its snapshot, taken when it next writes, will cover this
        if self._chunks and self._size + len(data) > limit:
            self._chunks.clear()
            self._size = 0
            self.resync = True
            self._broker.resyncs += 1
        else:
            self._chunks.append(data)
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
                self._chunks.clear()
                self._size = 0
                self.since, frame = self._broker.snapshot_frame()
                return frame
            if self._chunks:
                data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
                self._chunks.clear()
                self._size = 0
                return data
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Broker:
    def __init__(
        self,
        snapshot: Callable[[], list[PullStatus]],
        *,
        max_clients: int = 256,
        ring_size: int = 16384,
        ring_bytes: int = 64 << 20,
        queue_bytes: int = 4 << 20,
        snapshot_max_age: float = 1.0,
        first_id: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._snapshot = snapshot
        self.max_clients = max_clients
        self.queue_bytes = queue_bytes
        self._seq = time.time_ns() // 1000 if first_id is None else first_id
        self._ring: deque[bytes] = deque()
        self._ring_size = ring_size
        self._ring_bytes = ring_bytes
        self._ring_used = 0
        self._pending: list[bytes] = []
        self._clients: dict[Subscription, None] = {}
        self.snapshot_max_age = snapshot_max_age
        self._clock = clock
        self._cached: tuple[int, float, bytes] | None = None
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
        """The store's listener: encode once, keep for replay, send on the next flush."""
        self._seq += 1
        frame = b"id: %d\nevent: %s\ndata: %s\n\n" % (self._seq, event.type.encode(), encode(event))
        ring = self._ring
        ring.append(frame)
        self._ring_used += len(frame)
        while len(ring) > self._ring_size or (self._ring_used > self._ring_bytes and len(ring) > 1):
            self._ring_used -= len(ring.popleft())
        self._pending.append(frame)

    def subscribe(self, last_event_id: str | None = None) -> Subscription:
        """A new client starts from a snapshot; a returning one from what it missed, when the
        ring still holds all of it and it fits in its queue, else from a snapshot."""
        if self._closed:
            raise StreamUnavailable("the collector is shutting down")
        if len(self._clients) >= self.max_clients:
            raise StreamUnavailable(
                f"too many event stream clients (at most {self.max_clients}); try again later"
            )
        sub = Subscription(self, self._seq)
        missed = self._missed(_event_id(last_event_id)) if last_event_id is not None else None
        if missed is not None and len(missed) <= self.queue_bytes:
            sub.resync = False
            if missed:
                sub.offer(missed, self.queue_bytes)
        self._clients[sub] = None
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._clients.pop(sub, None)
        sub.close()

    def flush(self) -> None:
        """The fan-out tick: one chunk for everybody, a shorter one for clients that joined or
        resynchronised since the last flush (their snapshot already covers the start)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        last = self._seq
        first = last - len(pending) + 1
        chunk = b"".join(pending)
        for sub in self._clients:
            since = sub.since
            if sub.resync or since >= last:
                continue
            data = chunk if since < first else b"".join(pending[since - first + 1 :])
            sub.since = last
            sub.offer(data, self.queue_bytes)

    def heartbeat(self) -> None:
        for sub in self._clients:
            sub.offer(HEARTBEAT, self.queue_bytes)

    def snapshot_frame(self) -> tuple[int, bytes]:
        """The current state: a ``snapshot`` event, then the events since it was built; and the
        id of the last event that covers."""
        cached = self._cached
        now = self._clock()
        if cached is not None and now - cached[1] <= self.snapshot_max_age:
            seq, _, frame = cached
            since = self._missed(seq)
            if since is not None:
                return self._seq, frame + since if since else frame
        body = encode(PullList(pulls=self._snapshot()))
        frame = b"id: %d\nevent: snapshot\ndata: %s\n\n" % (self._seq, body)
        self._cached = (self._seq, now, frame)
        return self._seq, frame

    def close(self) -> None:
        """Ends every stream, so that a graceful shutdown does not wait on them."""
        self._closed = True
        for sub in list(self._clients):
            sub.close()

    def _missed(self, last: int | None) -> bytes | None:
        """The frames after ``last``, or None when the ring no longer holds them all."""
        oldest = self._seq - len(self._ring) + 1
        if last is None or not oldest - 1 <= last <= self._seq:
            return None
        return b"".join(islice(self._ring, last - oldest + 1, None))


def _event_id(text: str) -> int | None:
    """Ids are ours, so one that is not a number is from elsewhere: a snapshot answers it."""
    try:
        return int(text)
    except ValueError:
        return None
