"""The event stream over real sockets: httpx-sse clients (and a raw socket for a client that
stops reading) against uvicorn on loopback. Tests wait for events, never for time."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import zlib
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import httpx
import msgspec
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from pulltrace.model import PullEvent, PullList, PullStatus
from tests.collector.conftest import (
    NGINX,
    T0,
    FakeCorrelator,
    Running,
    body,
    eventually,
    layer,
    pull,
)

WAIT = 20.0
PLAIN = {"Accept-Encoding": "identity"}
"""httpx asks for gzip unless told otherwise."""


class Reader:
    """Consumes a stream in the background; tests take its events one by one."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self.headers = headers or {}
        self.events: asyncio.Queue[ServerSentEvent | None] = asyncio.Queue()
        self.opened = asyncio.Event()
        self.status = 0
        self.response_headers = httpx.Headers()
        self._task: asyncio.Task[None] | None = None
        self._own = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(10, read=None))

    async def __aenter__(self) -> Reader:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.opened.wait(), WAIT)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._own:
            await self._client.aclose()

    async def _run(self) -> None:
        try:
            async with aconnect_sse(self._client, "GET", self.url, headers=self.headers) as src:
                self.status = src.response.status_code
                self.response_headers = src.response.headers
                self.opened.set()
                async for sse in src.aiter_sse():
                    await self.events.put(sse)
        finally:
            self.opened.set()
            await self.events.put(None)  # the stream ended

    async def next(self) -> ServerSentEvent:
        sse = await asyncio.wait_for(self.events.get(), WAIT)
        assert sse is not None, "the stream ended"
        return sse

    async def until(self, predicate: Callable[[ServerSentEvent], bool]) -> list[ServerSentEvent]:
        """Every event up to and including the first one that matches."""
        seen = [await self.next()]
        while not predicate(seen[-1]):
            seen.append(await self.next())
        return seen

    async def ended(self) -> bool:
        """Whether the stream ends (rather than yielding another event)."""
        return await asyncio.wait_for(self.events.get(), WAIT) is None


def is_event(kind: str, pull_id: str) -> Callable[[ServerSentEvent], bool]:
    return lambda sse: sse.event == kind and msgspec.json.decode(sse.data)["pull"]["id"] == pull_id


def snapshot_of(sse: ServerSentEvent) -> list[PullStatus]:
    assert sse.event == "snapshot"
    return msgspec.json.decode(sse.data, type=PullList).pulls


@pytest.fixture
async def http(collector: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=collector.url, timeout=10) as client:
        yield client


async def post(client: httpx.AsyncClient, content: bytes) -> None:
    reply = await client.post("/api/v1/report", content=content)
    assert reply.status_code == 204, reply.text


def events_url(running: Running) -> str:
    return running.url + "/api/v1/events"


async def test_a_new_client_gets_a_snapshot_then_live_events(
    collector: Running, http: httpx.AsyncClient
) -> None:
    await post(http, body("node-a", [pull("a1", layers=[layer(0, done=100)])]))
    async with Reader(events_url(collector)) as reader:
        assert reader.status == 200
        first = await reader.next()
        (held,) = snapshot_of(first)
        assert held.id == "a1" and held.layers[0].downloaded_bytes == 100
        assert msgspec.json.decode(first.data)["schemaVersion"] == "v1"
        await post(http, body("node-a", [pull("a1", layers=[layer(0, done=1000)])], at=1))
        live = await reader.until(is_event("pull.completed", "a1"))
    assert [e.event for e in live] == ["layer.completed", "pull.completed"]
    assert [int(e.id) for e in live] == [int(first.id) + 1, int(first.id) + 2]
    for sse in live:
        event = msgspec.json.decode(sse.data, type=PullEvent)
        assert event.type == sse.event and event.node_name == "node-a"
        assert event.pull.id == "a1" and event.schema_version == "v1"
    assert msgspec.json.decode(live[0].data, type=PullEvent).layer is not None


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
async def test_resume_with_last_event_id_replays_exactly_what_was_missed(
    collector: Running, http: httpx.AsyncClient, encoding: str
) -> None:
    url = events_url(collector)
    accept = {"Accept-Encoding": encoding}
    async with Reader(url) as steady:
        await steady.next()
        async with Reader(url, accept) as leaving:
            await leaving.next()
            await post(http, body("node-a", [pull("a1", layers=[layer(0, done=10)])]))
            before = await leaving.until(is_event("layer.started", "a1"))
        last_id = before[-1].id
        # While it is away: a second pull, and the first one completes.
        b1 = pull("b1", repo="docker.io/library/redis", layers=[layer(0, done=20, pull="b")])
        await post(http, body("node-b", [replace_node(b1, "node-b")]))
        await post(http, body("node-a", [pull("a1", layers=[layer(0, done=1000)])], at=1))
        seen = await steady.until(is_event("pull.completed", "a1"))
        missed = seen[[e.id for e in seen].index(last_id) + 1 :]
        # node-b's agent reports for the first time: its node is announced, then its pull.
        assert [e.event for e in missed[:2]] == ["node.changed", "pull.started"]
        async with Reader(url, {"Last-Event-ID": last_id, **accept}) as back:
            replay = await back.until(is_event("pull.completed", "a1"))
            assert back.response_headers.get("content-encoding", "identity") == encoding
    assert [(e.id, e.event, e.data) for e in replay] == [(e.id, e.event, e.data) for e in missed]


def replace_node(status: PullStatus, node: str) -> PullStatus:
    return msgspec.structs.replace(status, node_name=node)


@pytest.mark.parametrize("last_id", ["old", "garbage", "future"])
async def test_resume_from_an_id_no_longer_held_gets_a_fresh_snapshot(
    launch: Callable[..., Running], last_id: str
) -> None:
    running = launch(ring_size=2)
    url = events_url(running)
    async with httpx.AsyncClient(base_url=running.url) as http, Reader(url) as steady:
        first = await steady.next()
        for n in range(3):
            await post(http, body(f"node-{n}", [pull(f"p{n}", node=f"node-{n}")]))
            # One batch each (the new node's status, the pull's start), so that the ring of two
            # events holds one whole batch.
            await steady.until(is_event("pull.started", f"p{n}"))
        header = {
            "old": first.id,
            "garbage": "not-an-id",
            "future": str(int(first.id) + 10**9),
        }[last_id]
        async with Reader(url, {"Last-Event-ID": header}) as back:
            fresh = await back.next()
    assert sorted(p.id for p in snapshot_of(fresh)) == ["p0", "p1", "p2"]
    assert int(fresh.id) == int(first.id) + 6


async def test_a_client_up_to_date_gets_nothing_replayed(
    collector: Running, http: httpx.AsyncClient
) -> None:
    url = events_url(collector)
    async with Reader(url) as steady:
        first = await steady.next()
        async with Reader(url, {"Last-Event-ID": first.id}) as back:
            await post(http, body("node-a", [pull("a1")]))
            node, started = await back.next(), await back.next()
    assert node.event == "node.changed" and int(node.id) == int(first.id) + 1
    assert started.event == "pull.started" and int(started.id) == int(first.id) + 2


async def test_heartbeat_comments(launch: Callable[..., Running]) -> None:
    running = launch(heartbeat_interval=0.05)
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=WAIT)) as client,
        client.stream("GET", events_url(running)) as stream,
    ):
        assert stream.headers["content-type"] == "text/event-stream"
        assert stream.headers["cache-control"] == "no-cache"
        lines = stream.aiter_lines()
        assert (await anext(lines)).startswith("id: ")
        while await anext(lines) != ": heartbeat":
            pass


async def open_streams(url: str, count: int) -> tuple[httpx.AsyncClient, list[Reader]]:
    """``count`` streams over one client (one connection each), which is returned to close."""
    limits = httpx.Limits(max_connections=count + 10)
    client = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(WAIT, read=None))
    readers = [Reader(url, client=client) for _ in range(count)]
    await asyncio.gather(*(r.__aenter__() for r in readers))
    return client, readers


async def close_streams(client: httpx.AsyncClient, readers: list[Reader]) -> None:
    await asyncio.gather(*(r.__aexit__(None, None, None) for r in readers))
    await client.aclose()


async def test_the_257th_client_is_refused(collector: Running) -> None:
    url = events_url(collector)
    client, readers = await open_streams(url, 256)
    try:
        firsts = await asyncio.gather(*(r.next() for r in readers))
        assert {sse.event for sse in firsts} == {"snapshot"}
        assert all(r.status == 200 for r in readers)
        reply = await client.get(url)
        assert reply.status_code == 503
        assert reply.json() == {
            "error": "too many event stream clients (at most 256); try again later"
        }
        assert reply.headers["retry-after"] == "5"
        # A client that leaves frees its slot at once, not at the next heartbeat.
        await readers.pop().__aexit__(None, None, None)
        await eventually(lambda: collector.service.broker.client_count == 255)
        async with Reader(url) as late:
            assert late.status == 200 and (await late.next()).event == "snapshot"
    finally:
        await close_streams(client, readers)


async def test_a_lower_client_limit(launch: Callable[..., Running]) -> None:
    running = launch(max_sse_clients=2)
    url = events_url(running)
    client, readers = await open_streams(url, 2)
    try:
        reply = await client.get(url)
        assert reply.status_code == 503 and "at most 2" in reply.json()["error"]
    finally:
        await close_streams(client, readers)


def stalled_client(port: int, encoding: str) -> socket.socket:
    """Subscribes and then never reads, with a receive buffer as small as the kernel allows."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    head = f"GET /api/v1/events HTTP/1.1\r\nHost: c\r\nAccept-Encoding: {encoding}\r\n\r\n"
    sock.sendall(head.encode())
    return sock


class Decoded:
    """The SSE text of a raw response as it arrives, gzip or not, and where its last snapshot
    starts; incremental, since a stalled client has megabytes to catch up on."""

    SNAPSHOT = b"event: snapshot\n"

    def __init__(self) -> None:
        self.raw = bytearray()
        self.at: int | None = None
        self.inflate: Any = None
        self.text = bytearray()
        self.snapshots = 0
        self.snapshot_at = -1
        self._scanned = 0

    def feed(self, data: bytes) -> None:
        self.raw += data
        if self.at is None:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            self.at = end + 4
            if b"content-encoding: gzip" in self.raw[:end]:
                self.inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        while (end := self.raw.find(b"\r\n", self.at)) >= 0:
            size = int(self.raw[self.at : end], 16)
            if size == 0 or end + 4 + size > len(self.raw):
                break
            body = bytes(self.raw[end + 2 : end + 2 + size])
            self.text += self.inflate.decompress(body) if self.inflate else body
            self.at = end + 4 + size
        start = max(0, self._scanned - len(self.SNAPSHOT))
        while (found := self.text.find(self.SNAPSHOT, start)) >= 0:
            self.snapshots += 1
            self.snapshot_at = start = found + 1
        self._scanned = len(self.text)


def heavy_pull(n: int) -> PullStatus:
    """Forty started layers: its start is forty-one events of about 8 KiB each (a layer's
    event carries the pull without its layers, but with its long error)."""
    layers = [layer(i, total=10_000, done=10, pull=f"h{n}") for i in range(40)]
    digest = f"sha256:{n:064d}"
    return pull(f"h{n}", node=f"node-{n}", digest=digest, layers=layers, error="e" * 4000)


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
async def test_a_stalled_client_is_resynchronised_and_never_delays_a_fast_one(
    launch: Callable[..., Running], encoding: str
) -> None:
    running = launch(client_queue_bytes=64 << 10, heartbeat_interval=3600.0)
    broker = running.service.broker
    stalled = stalled_client(running.service.api_port, encoding)
    url = events_url(running)
    try:
        async with httpx.AsyncClient(base_url=running.url) as http, Reader(url) as fast:
            await fast.next()
            await eventually(lambda: broker.client_count == 2)
            got: list[ServerSentEvent] = []
            n = 0
            # Each report reaches the fast client in full before the next one is sent, while
            # the stalled client's backlog grows until its queue overflows.
            while broker.resyncs == 0:
                assert n < 4000, "the stalled client's queue never overflowed"
                await post(http, body(f"node-{n}", [heavy_pull(n)], interval=300))
                got += await fast.until(is_layer_event(f"h{n}", 39))
                n += 1
        assert "snapshot" not in {e.event for e in got}
        ids = [int(e.id) for e in got]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        assert len(got) == 42 * n  # each report: a new node, and a pull with 40 layers
        assert broker.resyncs == 1
        async with httpx.AsyncClient() as scraper:
            metrics = (await scraper.get(running.metrics_url)).text
        assert "\npulltrace_sse_resyncs_total 1.0\n" in metrics
        # Once it reads again, the stalled client is brought up to date with a snapshot.
        stalled.settimeout(WAIT)
        last = f'"id":"h{n - 1}"'.encode()
        stream = Decoded()
        while stream.snapshots < 2 or stream.text.find(last, stream.snapshot_at) < 0:
            chunk = stalled.recv(1 << 20)
            assert chunk, "the stream ended"
            stream.feed(chunk)
    finally:
        stalled.close()


def is_layer_event(pull_id: str, n: int) -> Callable[[ServerSentEvent], bool]:
    def match(sse: ServerSentEvent) -> bool:
        if sse.event != "layer.started":
            return False
        event = msgspec.json.decode(sse.data, type=PullEvent)
        return event.layer is not None and event.layer.digest == f"sha256:{pull_id}-layer-{n}"

    return match


async def test_kubelet_changes_from_a_watch_thread_reach_clients(
    launch: Callable[..., Running],
) -> None:
    corr = FakeCorrelator(synced=True)
    running = launch(corr)
    async with Reader(events_url(running)) as reader:
        assert snapshot_of(await reader.next()) == []
        corr.kubelet = [
            PullStatus(
                id="k1", node_name="node-z", repository=NGINX, phase="pulling", started_at=T0
            )
        ]
        await asyncio.to_thread(corr.changed)  # as a watch thread would
        started = await reader.next()
    assert started.event == "pull.started"
    assert msgspec.json.decode(started.data, type=PullEvent).pull.node_name == "node-z"


async def test_stale_and_expired_pulls_reach_clients(launch: Callable[..., Running]) -> None:
    running = launch(history_ttl=0.3)
    url = events_url(running)
    async with httpx.AsyncClient(base_url=running.url) as http, Reader(url) as reader:
        await reader.next()
        await post(http, body("node-a", [pull("a1", layers=[layer(0, done=10)])], interval=0.1))
        await post(http, body("node-b", [pull("b1", node="node-b", layers=[layer(0, done=1000)])]))
        seen: list[ServerSentEvent] = []
        while not {"a1", "b1"} <= {
            msgspec.json.decode(e.data)["pull"]["id"] for e in seen if e.event == "pull.removed"
        }:
            seen.append(await reader.next())
    a1 = [msgspec.json.decode(e.data, type=PullEvent) for e in seen if '"id":"a1"' in e.data]
    # Silent for three of its intervals: stale, neither completed nor failed, then expired.
    assert [(e.type, e.pull.phase) for e in a1][-2:] == [
        ("pull.progress", "stale"),
        ("pull.removed", "stale"),
    ]
    assert not {"pull.completed", "pull.failed"} & {e.type for e in a1}


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
async def test_stopping_the_collector_ends_the_streams(
    launch: Callable[..., Running], encoding: str
) -> None:
    """A gzip stream ends without a gzip trailer; httpx's decoder takes that as the end."""
    running = launch()
    async with Reader(events_url(running), {"Accept-Encoding": encoding}) as reader:
        await reader.next()
        await asyncio.to_thread(running.stop)
        assert await reader.ended()
    assert reader._task is not None and reader._task.exception() is None


async def test_gzip_and_plain_clients_at_once_read_the_same_events(
    collector: Running, http: httpx.AsyncClient
) -> None:
    url = events_url(collector)
    async with Reader(url) as zipped, Reader(url, PLAIN) as plain:
        assert zipped.response_headers["content-encoding"] == "gzip"
        assert "content-encoding" not in plain.response_headers
        for reader in (zipped, plain):
            assert reader.response_headers["vary"] == "accept-encoding"
            assert snapshot_of(await reader.next()) == []
        await post(http, body("node-a", [pull("a1", layers=[layer(0, done=10), layer(1)])]))
        done = [layer(0, done=1000), layer(1, done=1000)]
        await post(http, body("node-a", [pull("a1", layers=done)], at=1))
        seen = [await r.until(is_event("pull.completed", "a1")) for r in (zipped, plain)]
    assert [(e.id, e.event, e.data) for e in seen[0]] == [(e.id, e.event, e.data) for e in seen[1]]
    assert [e.event for e in seen[0]] == [
        "node.changed",
        "pull.started",
        "layer.started",
        "layer.completed",
        "layer.started",
        "layer.completed",
        "pull.completed",
    ]


@pytest.mark.parametrize(
    ("accept", "gzip"),
    [
        ("gzip, deflate", True),
        ("br;q=1.0, gzip;q=0.5", True),
        ("*", True),
        ("gzip;q=0", False),
        ("deflate", False),
        ("*;q=0", False),
    ],
)
async def test_gzip_is_sent_only_when_accepted(
    collector: Running, http: httpx.AsyncClient, accept: str, gzip: bool
) -> None:
    reply = await http.head("/api/v1/events", headers={"Accept-Encoding": accept})
    assert reply.status_code == 200
    assert (reply.headers.get("content-encoding") == "gzip") == gzip


async def test_the_snapshot_has_no_layers_for_finished_pulls(
    collector: Running, http: httpx.AsyncClient
) -> None:
    await post(http, body("node-a", [pull("a1", layers=[layer(0, done=1000)])]))
    await post(http, body("node-b", [pull("b1", node="node-b", layers=[layer(0, done=10)])]))
    async with Reader(events_url(collector)) as reader:
        held = {p.id: p for p in snapshot_of(await reader.next())}
    assert held["a1"].phase == "completed" and held["a1"].layers == []
    assert held["a1"].layer_count == held["a1"].layers_done == 1
    assert [x.downloaded_bytes for x in held["b1"].layers] == [10]
    one = (await http.get("/api/v1/pulls/a1")).json()
    assert [x["downloadedBytes"] for x in one["layers"]] == [1000]
