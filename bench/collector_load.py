"""How the collector holds up under a large cluster's agents and a room full of watchers.

Simulated agents report over real HTTP on loopback, each node every 2 s with its own keep-alive
connection, while 256 clients follow the event stream; the collector runs alone in its own
process, so its CPU and memory are its own. The same load is run at 500 and at 5 000 nodes, so
that the growth of the cost is visible, not just its level. The target is a p99 of at most
500 ms, from the moment an agent sends a report (on loopback, its arrival) to the moment a client
has read the event it caused, at 5 000 nodes within one core.

Run from the repository root (no root, no containerd, no cluster)::

    python -m bench.collector_load [--nodes 500,5000] [--duration 30] [--clients 256] [--no-gzip]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import math
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import psutil
import uvloop

from pulltrace import __version__
from pulltrace.model import AgentReport, LayerStatus, PullStatus, encode

INTERVAL = 2.0
"""Seconds between two reports of one node."""
JITTER = 0.05
"""An agent's tick drifts by the time its poll takes; up to this fraction of the interval."""
RETAIN = 60.0
"""Seconds a finished pull stays in its node's reports (the tracker's ``retain``)."""
IDLE, SINGLE = 0.70, 0.25
"""Shares of nodes with no pull and with one pull; the rest have 2-4 pulls at a time."""
PULL_SECONDS = (8.0, 60.0)
GAP_SECONDS = 2.0
"""At most this long between a pull finishing and the node's next one starting."""
IMAGES = 300
SEED = 20260115
WARMUP = 10.0
"""Seconds of load before the window, while every node connects and sends its first reports and
the first pulls get going."""
STARTUP_TIMEOUT = 20.0
CONNECT = 3.0
"""Seconds the clients have to connect, before the agents start."""
REPORT_TIMEOUT = 5.0
"""The agent's HTTP timeout."""
MAX_BACKOFF = 30.0
"""The agent's longest wait after failed reports."""
LATE = 0.25
"""A report sent this much after its tick means the generator, not the collector, is behind."""
AGENT_PROCS = 2
CLIENT_PROCS = 4
SAMPLE_EVERY = 16
"""Each client reads every byte but looks for latency marks in one flush in this many, in turn,
so that the clients' parsing does not take the CPU the collector needs; every event is still
measured by 16 of 256 clients."""
BUSY = 0.90
"""Above this share of its CPU, the load generator may be what the clients wait for."""
SATURATED = 0.97
"""Above this share, the collector's core had no time left to give it."""
SOFTIRQ = 0.15
OTHERS = 0.10
"""Shares of the collector's CPU that other work may take before the figures are suspect."""
CLIENT_LAG = 0.05
TARGET_P99 = 0.5
TARGET_CORES = 1.0
LOOPBACK = "127.0.0.1"
MiB = 1 << 20
MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
RATE_UNIT = 4096
"""Bytes a second; a pull's rate is a whole number of these, so that its id can carry it."""
MAX_NODES = 0xFFFF
"""Node numbers take four hex digits of a pull id."""
HIST_BINS = 60_000
"""Latency histogram bins of 1 ms."""

# -- pull ids that carry their own clock ------------------------------------------------------
#
# Every active pull downloads at a constant rate from a known start, so the downloadedBytes of
# any report says when that report was built; the pull's id says where it started and how fast
# it goes. A client that sees a pull.* or layer.* event needs nothing else to tell how old the
# report behind it is, across processes and with no table shared with the agents.


def make_pull_id(epoch_ms: int, start_ms: int, node: int, rate_units: int) -> str:
    """The agent's ids are 16 hex digits; so are these: start, node, rate."""
    return f"{start_ms - epoch_ms:08x}{node:04x}{rate_units:04x}"


def sent_at(pull_id: bytes, downloaded: int, epoch_ms: int) -> float:
    """When the report was built that said ``downloaded`` for this pull."""
    start = (int(pull_id[:8], 16) + epoch_ms) / 1000
    return start + downloaded / (int(pull_id[12:16], 16) * RATE_UNIT)


MARK = re.compile(
    rb'"pull":\{"id":"([0-9a-f]{16})","nodeName":"[^"]*","imageRef":"[^"]*",'
    rb'"repository":"[^"]*","manifestDigest":"[^"]*","phase":"pulling",'
    rb'"totalBytes":\d+,"downloadedBytes":(\d+)'
)
"""A pulling pull inside an event (a completed one's bytes no longer tell the time)."""
MARK_SPAN = 1024
"""Longer than any match of MARK, for matches split between two reads."""
READ_BUFFER = 512 << 10
HEAD = 256
"""Bytes kept from the start of a chunk: a heartbeat or two, then the first frame's id."""
TAIL = 16 << 10
"""Bytes kept from the end of a chunk: more than any frame but a snapshot, which comes first."""
GZIP_HEADER_SIZE = 10
"""The collector's gzip header: no name, no comment, no extra field."""
ZHEAD = 1024
"""Compressed bytes kept from the start of a chunk: more than its first HEAD bytes take."""
SYNC_MARK = b"\x00\x00\xff\xff"
"""How every deflate piece of the collector ends (an empty stored block, ``Z_SYNC_FLUSH``)."""
Buffer = bytes | bytearray


# -- the simulated cluster ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Image:
    repository: str
    manifest_digest: str
    layers: tuple[tuple[str, int], ...]
    """(digest, size) in manifest order."""


def catalogue() -> list[Image]:
    """The same few hundred images on every node, as in a real cluster, built alike in every
    process from one seed."""
    rng = random.Random(SEED)
    images = []
    for k in range(IMAGES):
        layers = tuple(
            (
                _digest(f"layer-{k}-{i}"),
                int(min(300 * MiB, max(64 << 10, rng.lognormvariate(16.5, 1.2)))),
            )
            for i in range(rng.randint(3, 12))
        )
        repository = f"registry.example.com/team-{k % 24:02d}/service-{k:03d}"
        images.append(Image(repository, _digest(f"manifest-{k}"), layers))
    return images


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class Pull:
    """One image pull on one node, as the agent's tracker reports it: cached layers first, then
    the others one after the other at the pull's rate, so that the pull's downloadedBytes is
    exactly ``rate * (t - start)``."""

    __slots__ = (
        "_done",
        "_pending",
        "_static",
        "bounds",
        "final",
        "finish",
        "id",
        "image",
        "node",
        "rate",
        "start",
        "total",
    )

    def __init__(
        self, node: str, number: int, image: Image, start_ms: int, epoch_ms: int, rng: random.Random
    ) -> None:
        self.node = node
        self.image = image
        self.start = start_ms / 1000
        cached = rng.randint(0, min(2, len(image.layers) - 1))
        sizes = [size for _, size in image.layers]
        downloadable = sum(sizes[cached:])
        units = round(downloadable / rng.uniform(*PULL_SECONDS) / RATE_UNIT)
        units = max(1, min(0xFFFF, units))
        self.rate = units * RATE_UNIT
        self.id = make_pull_id(epoch_ms, start_ms, number, units)
        self.total = sum(sizes)
        self.finish = self.start + downloadable / self.rate
        self.bounds: list[tuple[int, int]] = []
        self._static: list[LayerStatus] = []
        self._done: list[LayerStatus] = []
        self._pending: list[LayerStatus] = []
        offset = 0
        for i, (digest, size) in enumerate(image.layers):
            if i < cached:
                self._static.append(
                    LayerStatus(
                        digest, MEDIA_TYPE, size, percent=100.0, cached=True, total_known=True
                    )
                )
                continue
            began, offset = offset, offset + size
            self.bounds.append((began, offset))
            self._done.append(
                LayerStatus(
                    digest,
                    MEDIA_TYPE,
                    size,
                    size,
                    percent=100.0,
                    started_at=_dt(self.start + began / self.rate),
                    completed_at=_dt(self.start + offset / self.rate),
                    total_known=True,
                )
            )
            self._pending.append(LayerStatus(digest, MEDIA_TYPE, size, total_known=True))
        self.final = self._status(downloadable)

    def status(self, t: float) -> PullStatus:
        return self.final if t >= self.finish else self._status(int((t - self.start) * self.rate))

    def _status(self, done: int) -> PullStatus:
        layers = list(self._static)
        finished = 0
        for j, (began, ended) in enumerate(self.bounds):
            if done >= ended:
                layers.append(self._done[j])
                finished += 1
            elif done > began:
                size = ended - began
                layers.append(
                    LayerStatus(
                        self._done[j].digest,
                        MEDIA_TYPE,
                        size,
                        done - began,
                        float(self.rate),
                        100.0 * (done - began) / size,
                        started_at=self._done[j].started_at,
                        total_known=True,
                    )
                )
            else:
                layers.append(self._pending[j])
        cached_bytes = sum(layer.total_bytes for layer in self._static)
        completed = finished == len(self.bounds)
        remaining = self.total - cached_bytes - done
        return PullStatus(
            id=self.id,
            node_name=self.node,
            image_ref=f"{self.image.repository}@{self.image.manifest_digest}",
            repository=self.image.repository,
            manifest_digest=self.image.manifest_digest,
            phase="completed" if completed else "pulling",
            total_bytes=self.total,
            downloaded_bytes=done,
            cached_bytes=cached_bytes,
            bytes_per_sec=float(self.rate) if not completed else done / (self.finish - self.start),
            eta_seconds=remaining / self.rate,
            percent=100.0 * (done + cached_bytes) / self.total,
            layer_count=len(layers),
            layers_done=finished + len(self._static),
            layers_cached=len(self._static),
            started_at=_dt(self.start),
            completed_at=_dt(self.finish) if completed else None,
            layers=layers,
            total_known=True,
        )


class Node:
    """One agent: a fixed number of pull slots (none for most nodes), each starting a new pull
    soon after the last one finished, and the finished ones reported for another minute.

    Every slot's first pull starts at the beginning of the run. Nodes that joined mid-pull, or
    with a minute of finished pulls, would make the collector announce every layer of all of
    them in the first two seconds, to every client at once: that measures a restart storm, not
    the steady state, and it takes longer to drain than a warm-up can afford."""

    def __init__(self, number: int, images: list[Image], epoch_ms: int, t0: float) -> None:
        self.number = number
        self.name = f"node-{number:05d}"
        self.images = images
        self.epoch_ms = epoch_ms
        self.rng = random.Random(SEED * 65537 + number)
        share = self.rng.random()
        slots = 0 if share < IDLE else 1 if share < IDLE + SINGLE else self.rng.randint(2, 4)
        self.phase = self.rng.uniform(0, INTERVAL)
        self.current: list[Pull] = []
        self.finished: list[Pull] = []
        for _ in range(slots):
            self.current.append(self._next(t0))

    def report(self, t: float) -> bytes:
        for k, pull in enumerate(self.current):
            while pull.finish <= t:
                self.finished.append(pull)
                pull = self.current[k] = self._next(pull.finish)
        self.finished = [p for p in self.finished if p.finish > t - RETAIN]
        pulls = [p.final for p in self.finished]
        pulls += [p.status(t) for p in self.current if p.start <= t]
        report = AgentReport(
            node_name=self.name,
            timestamp=_dt(t),
            pulls=pulls,
            agent_version=__version__,
            interval_seconds=INTERVAL,
        )
        return encode(report)

    def _next(self, after: float) -> Pull:
        busy = {p.image.manifest_digest for p in self.current}
        image = self.rng.choice(self.images)
        while image.manifest_digest in busy:
            image = self.rng.choice(self.images)
        start_ms = math.ceil((after + self.rng.uniform(0, GAP_SECONDS)) * 1000)
        ids = {p.id for p in self.current + self.finished}
        while True:
            pull = Pull(self.name, self.number, image, start_ms, self.epoch_ms, self.rng)
            if pull.id not in ids:
                return pull
            start_ms += 1


# -- shared plumbing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    port: int
    t0: float
    """When the agents start and the clients must be connected."""
    begin: float
    end: float
    epoch_ms: int

    def __contains__(self, t: float) -> bool:
        return self.begin <= t < self.end


class Histogram:
    """Milliseconds, 1 ms bins: exact enough for p99 against 500 ms, and cheap to merge."""

    def __init__(self) -> None:
        self.bins = [0] * HIST_BINS
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self.bins[min(HIST_BINS - 1, max(0, int(seconds * 1000)))] += 1
        self.count += 1
        self.max = max(self.max, seconds)

    def merge(self, other: Histogram) -> None:
        self.bins = [a + b for a, b in zip(self.bins, other.bins, strict=True)]
        self.count += other.count
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float:
        """The upper edge of the bin holding the q-quantile, in seconds."""
        if not self.count:
            return math.nan
        rank = q * self.count
        seen = 0
        for ms, n in enumerate(self.bins):
            seen += n
            if seen >= rank:
                return (ms + 1) / 1000
        return self.max


async def _watch_lag(window: Window, lag: Histogram) -> None:
    """How late the process's event loop wakes up: when it is late, so are its measurements."""
    while time.time() < window.end:
        due = time.monotonic() + 0.05
        await asyncio.sleep(0.05)
        if time.time() in window:
            lag.add(time.monotonic() - due)


def _run(main: Callable[[], Any]) -> Any:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


# -- the agents --------------------------------------------------------------------------------


@dataclass
class AgentStats:
    sent: int = 0
    ok: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    late: int = 0
    rtt: Histogram = field(default_factory=Histogram)
    lag: Histogram = field(default_factory=Histogram)

    def merge(self, other: AgentStats) -> None:
        self.sent += other.sent
        self.ok += other.ok
        self.statuses += other.statuses
        self.late += other.late
        self.rtt.merge(other.rtt)
        self.lag.merge(other.lag)


def agent_worker(numbers: range, window: Window, out: Connection) -> None:
    images = catalogue()
    nodes = [Node(n, images, window.epoch_ms, window.t0) for n in numbers]
    stats = AgentStats()

    async def main() -> None:
        lag = asyncio.ensure_future(_watch_lag(window, stats.lag))
        await asyncio.gather(*(_agent(node, window, stats) for node in nodes))
        await lag

    _run(main)
    out.send(stats)
    out.close()


async def _agent(node: Node, window: Window, stats: AgentStats) -> None:
    """The agent's loop: a report per tick, one request at a time on a keep-alive connection,
    no catching up on ticks missed while a request was slow, and the agent's back-off after a
    failure, so that an overloaded collector sees the relief that real agents would give it."""
    head = (
        f"POST /api/v1/report HTTP/1.1\r\nHost: {LOOPBACK}:{window.port}\r\n"
        "Accept-Encoding: identity\r\nContent-Length: %d\r\nContent-Type: application/json\r\n"
        f"User-Agent: pulltrace/{__version__}\r\n\r\n"
    ).encode()
    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    tick = window.t0 + node.phase
    backoff = 0.0
    while tick < window.end:
        delay = tick - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = time.time()
        body = node.report(sent)
        status: int | str
        try:
            async with asyncio.timeout(REPORT_TIMEOUT):
                if streams is None:
                    streams = await asyncio.open_connection(LOOPBACK, window.port)
                streams[1].write(head % len(body) + body)
                status = await _status(streams[0])
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as err:
            status = type(err).__name__
            if streams is not None:
                streams[1].close()
                streams = None
        done = time.time()
        if sent in window:
            stats.sent += 1
            stats.statuses[str(status)] += 1
            stats.ok += isinstance(status, int) and 200 <= status < 300
            stats.rtt.add(done - sent)
            stats.late += sent - tick > LATE
        tick = max(done, tick + INTERVAL * (1 + node.rng.uniform(-JITTER, JITTER)))
        if isinstance(status, int) and status < 300:
            backoff = 0.0
        else:
            backoff = min(MAX_BACKOFF, max(INTERVAL, 2 * backoff))
            tick = max(tick, done + backoff * node.rng.uniform(0.8, 1.2))
    if streams is not None:
        streams[1].close()


async def _status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    if match:
        await reader.readexactly(int(match.group(1)))
    return status


# -- the event stream clients ------------------------------------------------------------------


@dataclass
class ClientStats:
    clients: int = 0
    events: list[int] = field(default_factory=list)
    """Per client, in the window: counted from the ids at both ends of every HTTP chunk."""
    bytes: int = 0
    gaps: int = 0
    """Events a client never received (a resynchronisation skips them)."""
    resyncs: int = 0
    disconnects: int = 0
    unmatched: int = 0
    latency: Histogram = field(default_factory=Histogram)
    lag: Histogram = field(default_factory=Histogram)

    def merge(self, other: ClientStats) -> None:
        self.clients += other.clients
        self.events += other.events
        self.bytes += other.bytes
        self.gaps += other.gaps
        self.resyncs += other.resyncs
        self.disconnects += other.disconnects
        self.unmatched += other.unmatched
        self.latency.merge(other.latency)
        self.lag.merge(other.lag)


class EventStream(asyncio.BufferedProtocol):
    """One ``GET /api/v1/events`` client that reads everything and parses little.

    The kernel copies straight into the client's own buffer. The client follows HTTP chunked
    framing, which costs nothing per byte: the collector writes whole SSE frames (or, with
    gzip, whole self-contained deflate pieces) in each chunk, except that a piece larger than
    its largest write is cut into several chunks. So a chunk that follows one ending a frame
    (``\\n\\n``) or a piece (deflate's sync marker) starts with an event id, and its first and
    last ids count its events and show any gap.

    With gzip, only the head of such a chunk is inflated, for its first id; the chunks that are
    sampled for latency marks are inflated whole, which gives their last id too. Events are
    counted from one chunk's first id to the next; gaps can be seen only after a chunk whose
    last id is known, which is every chunk in plain and the sampled ones with gzip.
    Resynchronisations (a snapshot) are seen either way. Latency marks are searched for in one
    chunk in ``SAMPLE_EVERY``."""

    def __init__(self, index: int, window: Window, stats: ClientStats, gzip: bool) -> None:
        self.window = window
        self.stats = stats
        self.gzip = gzip
        self.turn = index % SAMPLE_EVERY
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray(READ_BUFFER)
        self.view = memoryview(self.buffer)
        self.head = b""
        self.in_body = False
        self.line = b""
        self.need = 0
        self.header_left = GZIP_HEADER_SIZE if gzip else 0
        self.boundary = True
        """Whether the next chunk starts with a whole frame or piece."""
        self.starts = False
        self.sampled = False
        self.inflate: Any = None
        self.zhead = b""
        self.zend = b""
        self.payload = 0
        self.text_size = 0
        self.first: Buffer = b""
        self.tail: Buffer = b""
        self.carry: Buffer = b""
        self.chunks = 0
        self.last_id: int | None = None
        """Every event up to this id has been read (or, before ``exact``, counted as read)."""
        self.exact = False
        self.events = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        encoding = "Accept-Encoding: gzip\r\n" if self.gzip else ""
        self.transport.write(
            f"GET /api/v1/events HTTP/1.1\r\nHost: {LOOPBACK}:{self.window.port}\r\n"
            f"Accept: text/event-stream\r\nCache-Control: no-cache\r\n{encoding}\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if time.time() < self.window.end:
            self.stats.disconnects += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("the event stream closed before its snapshot"))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        now = time.time()
        if now in self.window:
            self.stats.bytes += nbytes
        data: Buffer = self.buffer
        if not self.in_body:
            self.head += self.buffer[:nbytes]
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end], self.head[end + 4 :]
            nbytes = len(data)
            lower = head.lower()
            if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in lower:
                self._fail(f"the event stream answered {head.splitlines()[0].decode()!r}")
                return
            if self.gzip and b"content-encoding: gzip" not in lower:
                self._fail("the event stream was not gzip-encoded although gzip was asked for")
                return
            self.in_body = True
        pos = 0
        while pos < nbytes:
            if self.need == 0:
                nl = data.find(b"\n", pos, nbytes)
                if nl < 0:
                    self.line += data[pos:nbytes]
                    return
                line, self.line, pos = (self.line + data[pos:nl]).strip(), b"", nl + 1
                if line:
                    self.need = int(line.split(b";")[0], 16)
                    if self.need == 0:
                        self._fail("the event stream ended")
                        return
                    self._chunk_start(now)
                continue
            end = min(nbytes, pos + self.need)
            self._body(data, pos, end, now)
            self.need -= end - pos
            pos = end
            if self.need == 0:
                self._chunk_done(now)

    def _chunk_start(self, now: float) -> None:
        self.starts = self.boundary
        self.sampled = self.chunks % SAMPLE_EVERY == self.turn and now in self.window
        self.inflate = None
        if self.gzip and self.sampled and self.starts:
            self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self.zhead = self.zend = b""
        self.first = self.tail = self.carry = b""
        self.payload = self.text_size = 0

    def _body(self, data: Buffer, pos: int, end: int, now: float) -> None:
        if self.header_left:
            skip = min(self.header_left, end - pos)
            self.header_left -= skip
            pos += skip
            if pos == end:
                return
        self.payload += end - pos
        if not self.gzip:
            self._text(data, pos, end, now)
            return
        piece = bytes(data[pos:end])
        if len(self.zhead) < ZHEAD:
            self.zhead += piece[: ZHEAD - len(self.zhead)]
        self.zend = (self.zend + piece[-len(SYNC_MARK) :])[-len(SYNC_MARK) :]
        if self.inflate is not None:
            text = self.inflate.decompress(piece)
            self._text(text, 0, len(text), now)

    def _text(self, data: Buffer, pos: int, end: int, now: float) -> None:
        """Plain SSE text of the current chunk: its head and tail are kept, and marks are
        looked for when it is sampled."""
        self.text_size += end - pos
        if len(self.first) < HEAD:
            self.first += data[pos : min(end, pos + HEAD - len(self.first))]
        if end - pos >= TAIL:
            self.tail = data[end - TAIL : end]
        else:
            self.tail = (self.tail + data[pos:end])[-TAIL:]
        if not self.sampled:
            return
        carry = self.carry
        if carry:
            # Marks that began in earlier reads of this chunk and end in this one.
            for m in MARK.finditer(carry + data[pos : min(end, pos + MARK_SPAN)]):
                if m.start() < len(carry) < m.end():
                    self._mark(m.group(1), int(m.group(2)), now)
        for m in MARK.finditer(data, pos, end):
            self._mark(m.group(1), int(m.group(2)), now)
        if end - pos >= MARK_SPAN:
            self.carry = data[end - MARK_SPAN : end]
        else:
            self.carry = (carry + data[pos:end])[-MARK_SPAN:]

    def _mark(self, pull_id: bytes, downloaded: int, now: float) -> None:
        age = now - sent_at(pull_id, downloaded, self.window.epoch_ms)
        if 0 <= age < HIST_BINS / 1000:
            self.stats.latency.add(age)
        else:
            self.stats.unmatched += 1

    def _chunk_done(self, now: float) -> None:
        """Frames start with ``id: N``; a heartbeat comment may come first."""
        self.chunks += 1
        if not self.payload:
            return  # the gzip header
        if self.gzip:
            self.boundary = self.zend == SYNC_MARK
            if self.starts and self.inflate is None:
                self.first = zlib.decompressobj(-zlib.MAX_WBITS).decompress(self.zhead, HEAD)
        else:
            self.boundary = self.tail.endswith(b"\n\n")
        first: int | None = None
        snapshot = False
        at = self.first.find(b"id: ") if self.starts else -1
        if at >= 0 and (eol := self.first.find(b"\n", at)) >= 0:
            first = int(self.first[at + 4 : eol])
            snapshot = self.first.startswith(b"event: snapshot", eol + 1)
        last: int | None = None
        if self.tail:
            # The last id line that arrived whole: a chunk cut from a large piece may end in one.
            tail = self.tail if self.text_size > len(self.tail) else b"\n" + self.tail
            at = tail.rfind(b"\nid: ")
            while at >= 0 and (eol := tail.find(b"\n", at + 5)) < 0:
                at = tail.rfind(b"\nid: ", 0, at)
            if at >= 0:
                last = int(tail[at + 5 : eol])
        self._count(first, snapshot, last, now in self.window)
        if self.gzip and not self.boundary:
            # A piece cut into several chunks: the next ones are not inflated, so the id after
            # them is not a gap but the count of the events they carried.
            self.exact = False

    def _count(self, first: int | None, snapshot: bool, last: int | None, counted: bool) -> None:
        if first is not None:
            if snapshot:
                if self.last_id is not None and counted:
                    self.stats.resyncs += 1
                self.last_id = first
            elif self.last_id is not None:
                missing = first - 1 - self.last_id
                if self.exact:
                    if counted and missing > 0:
                        self.stats.gaps += missing
                elif counted:
                    self.events += missing
                self.last_id = first - 1
            self.exact = False
        if last is not None and self.last_id is not None:
            if last > self.last_id:
                if counted:
                    self.events += last - self.last_id
                self.last_id = last
            self.exact = True
        if self.last_id is not None and not self.ready.done():
            self.ready.set_result(None)

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
        assert self.transport is not None
        self.transport.close()


def client_worker(first: int, count: int, window: Window, gzip: bool, out: Connection) -> None:
    stats = ClientStats(clients=count)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        streams: list[EventStream] = []
        for index in range(first, first + count):
            _, stream = await loop.create_connection(
                functools.partial(EventStream, index, window, stats, gzip), LOOPBACK, window.port
            )
            streams.append(stream)
        await asyncio.gather(*(s.ready for s in streams))
        out.send("ready")
        await _watch_lag(window, stats.lag)
        stats.events = [s.events for s in streams]
        for s in streams:
            assert s.transport is not None
            s.transport.close()

    try:
        _run(main)
    except (OSError, ConnectionError) as err:
        out.send(f"event stream clients: {err}")
        return
    out.send(stats)
    out.close()


# -- the collector -------------------------------------------------------------------------------


class BenchError(Exception):
    """The setup, not the collector, went wrong: the figures would mean nothing."""


class Collector:
    """``pulltrace collector`` in a process of its own, on ports it picks and logs."""

    def __init__(
        self, logdir: Path, kubeconfig: Path | None = None, name: str = "collector"
    ) -> None:
        """Without ``kubeconfig`` correlation is off: it is given one that does not exist."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("PULLTRACE_", "KUBERNETES_"))
        }
        env["KUBECONFIG"] = str(kubeconfig or logdir / "no-such-kubeconfig")
        self.log = logdir / f"{name}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "pulltrace.cli", "collector"),
                    *("--listen", f"{LOOPBACK}:0", "--metrics-listen", f"{LOOPBACK}:0"),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.ps = psutil.Process(self.proc.pid)
        self.port, self.metrics_port = self._ports()
        self._wait_healthy()

    def _ports(self) -> tuple[int, int]:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the collector exited with {self.proc.returncode}: {self.tail()}")
            for line in self.log.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("msg") == "collector listening":
                        return _port(entry["api"]), _port(entry["metrics"])
            time.sleep(0.05)
        raise BenchError("the collector did not log its ports")

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{LOOPBACK}:{self.port}/healthz").status_code == 200:
                    return
            time.sleep(0.05)
        raise BenchError("the collector did not become healthy")

    def gauges(self, timeout: float) -> dict[str, float]:
        """What the collector says it serves; nothing when it is too busy to answer in time (its
        metrics share its event loop)."""
        try:
            text = httpx.get(f"http://{LOOPBACK}:{self.metrics_port}/metrics", timeout=timeout).text
        except httpx.HTTPError:
            return {}
        values = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in ("pulltrace_agents_connected", "pulltrace_sse_clients_active"):
                values[name] = float(value)
        return values

    def peak_rss(self) -> int:
        """VmHWM: the lifetime peak, which is what a memory limit has to cover."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise BenchError("no VmHWM for the collector")

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no output)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


# -- one run -----------------------------------------------------------------------------------


@dataclass
class Result:
    nodes: int
    clients: int
    duration: float
    agents: AgentStats
    streams: ClientStats
    collector_cpu: float
    """Seconds of CPU, user and system, over the window."""
    collector_system: float
    """Of which in the kernel: on loopback, mostly TCP for both ends of the event streams."""
    collector_rss: int
    agent_cpu: float
    client_cpu: float
    busy: list[tuple[float, float]]
    """Per CPU, the share of the window it was busy with anything, and with softirq alone."""
    collector_cpus: list[int]
    gauges: dict[str, float]

    def busy_share(self, collector: bool, softirq: bool = False) -> float:
        """How busy the collector's CPU was, or the generator's CPUs on average (every CPU when
        the collector is not pinned)."""
        cpus = [
            shares[softirq]
            for c, shares in enumerate(self.busy)
            if not self.collector_cpus or (c in self.collector_cpus) == collector
        ]
        return sum(cpus) / len(cpus)

    @property
    def offered(self) -> float:
        return self.nodes / INTERVAL

    def per_second(self, n: float) -> float:
        return n / self.duration


@contextlib.contextmanager
def _processes() -> Iterator[list[multiprocessing.process.BaseProcess]]:
    """Workers stop by themselves at the end of the window; after a failure, at once."""
    procs: list[multiprocessing.process.BaseProcess] = []
    try:
        yield procs
    except BaseException:
        for proc in procs:
            proc.kill()
        raise
    finally:
        for proc in procs:
            proc.join(timeout=REPORT_TIMEOUT + 5)
            if proc.is_alive():
                proc.kill()
                proc.join()


def run(
    nodes: int,
    clients: int,
    duration: float,
    gzip: bool,
    logdir: Path,
    collector_cpus: list[int],
) -> Result:
    ctx = multiprocessing.get_context("fork")
    collector = Collector(logdir)
    try:
        if collector_cpus:
            collector.ps.cpu_affinity(collector_cpus)
        t0 = time.time() + CONNECT
        window = Window(
            port=collector.port,
            t0=t0,
            begin=t0 + WARMUP,
            end=t0 + WARMUP + duration,
            epoch_ms=int(t0 - 3600) * 1000,
        )
        with _processes() as procs:
            client_pipes, agent_pipes = [], []
            share = -(-clients // CLIENT_PROCS)
            for first in range(0, clients, share):
                receive, send = ctx.Pipe(duplex=False)
                count = min(share, clients - first)
                procs.append(
                    ctx.Process(target=client_worker, args=(first, count, window, gzip, send))
                )
                client_pipes.append(receive)
            for k in range(AGENT_PROCS):
                receive, send = ctx.Pipe(duplex=False)
                numbers = range(k, nodes, AGENT_PROCS)
                procs.append(ctx.Process(target=agent_worker, args=(numbers, window, send)))
                agent_pipes.append(receive)
            for proc in procs:
                proc.start()
            for pipe in client_pipes:
                if not pipe.poll(max(0.0, t0 - time.time())):
                    raise BenchError("the event stream clients did not connect in time")
                if (message := pipe.recv()) != "ready":
                    raise BenchError(str(message))
            client_procs = [psutil.Process(p.pid) for p in procs[: len(client_pipes)]]
            agent_procs = [psutil.Process(p.pid) for p in procs[len(client_pipes) :]]
            _sleep_until(window.begin)
            before = _Sample.take(collector.ps, client_procs, agent_procs)
            _sleep_until((window.begin + window.end) / 2)
            with ThreadPoolExecutor(1) as pool:
                scrape = pool.submit(collector.gauges, (window.end - time.time()) * 0.9)
                _sleep_until(window.end)
                after = _Sample.take(collector.ps, client_procs, agent_procs)
                gauges = scrape.result()
            streams = ClientStats()
            for pipe in client_pipes:
                streams.merge(_receive(pipe, ClientStats, "an event stream client"))
            agents = AgentStats()
            for pipe in agent_pipes:
                agents.merge(_receive(pipe, AgentStats, "an agent process"))
        if collector.proc.poll() is not None:
            raise BenchError(f"the collector exited during the run: {collector.tail()}")
        rss = collector.peak_rss()
    finally:
        collector.stop()
    return Result(
        nodes=nodes,
        clients=clients,
        duration=duration,
        agents=agents,
        streams=streams,
        collector_cpu=after.collector - before.collector,
        collector_system=after.collector_system - before.collector_system,
        collector_rss=rss,
        agent_cpu=after.agents - before.agents,
        client_cpu=after.clients - before.clients,
        busy=[_busy(a, b) for a, b in zip(before.cpus, after.cpus, strict=True)],
        collector_cpus=collector_cpus,
        gauges=gauges,
    )


@dataclass(frozen=True)
class _Sample:
    """CPU seconds so far, user and system, of each side; and the machine's per-CPU times."""

    collector: float
    collector_system: float
    clients: float
    agents: float
    cpus: list[Any]

    @classmethod
    def take(
        cls, collector: psutil.Process, clients: list[psutil.Process], agents: list[psutil.Process]
    ) -> _Sample:
        own = collector.cpu_times()
        return cls(
            collector=own.user + own.system,
            collector_system=own.system,
            clients=sum(_cpu(p) for p in clients),
            agents=sum(_cpu(p) for p in agents),
            cpus=psutil.cpu_times(percpu=True),
        )


def _receive(pipe: Connection, kind: type, what: str) -> Any:
    if not pipe.poll(REPORT_TIMEOUT + 10):
        raise BenchError(f"{what} sent no results")
    message = pipe.recv()
    if not isinstance(message, kind):
        raise BenchError(str(message))
    return message


def _sleep_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 0.5))


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _busy(before: Any, after: Any) -> tuple[float, float]:
    total = sum(after) - sum(before)
    if total <= 0:
        return 0.0, 0.0
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    return 1 - idle / total, (after.softirq - before.softirq) / total


# -- the report --------------------------------------------------------------------------------


def report(results: list[Result], collector_cpus: list[int], cpus: list[int], gzip: bool) -> None:
    if collector_cpus:
        others = ",".join(str(c) for c in cpus if c not in collector_cpus)
        print(f"collector pinned to CPU {collector_cpus[0]}, load generator to CPU {others}")
    else:
        print("one CPU: the collector and the load generator share it")
    print(f"event stream clients ask for {'gzip' if gzip else 'no compression (--no-gzip)'}\n")
    rows: list[tuple[str, Callable[[Result], str]]] = [
        ("reports/s offered", lambda r: f"{r.offered:.0f}"),
        ("reports/s sent by the generator", lambda r: f"{r.per_second(r.agents.sent):.0f}"),
        ("reports/s sustained (2xx)", lambda r: f"{r.per_second(r.agents.ok):.0f}"),
        ("failed reports (non-2xx, timeouts)", lambda r: _errors(r.agents)),
        (
            "report round trip p50/p99",
            lambda r: _ms(r.agents.rtt, 0.5) + " / " + _ms(r.agents.rtt, 0.99),
        ),
        ("event latency p50", lambda r: _ms(r.streams.latency, 0.5)),
        ("event latency p99", lambda r: _ms(r.streams.latency, 0.99)),
        ("event latency max", lambda r: f"{r.streams.latency.max * 1000:.0f} ms"),
        ("latency samples", lambda r: f"{r.streams.latency.count}"),
        ("events/s per client", lambda r: _per_client(r)),
        (
            "MiB/s per client (as sent)",
            lambda r: f"{r.per_second(r.streams.bytes) / max(1, r.clients) / MiB:.2f}",
        ),
        ("lost events, resyncs", lambda r: f"{r.streams.gaps}, {r.streams.resyncs}"),
        ("collector CPU (% of a core)", lambda r: f"{100 * r.per_second(r.collector_cpu):.0f} %"),
        ("  of which system", lambda r: f"{100 * r.per_second(r.collector_system):.0f} %"),
        ("collector peak RSS", lambda r: f"{r.collector_rss / MiB:.0f} MiB"),
        ("collector saw agents/clients", lambda r: _gauges(r)),
        (
            "generator: agents CPU (% of a core)",
            lambda r: f"{100 * r.per_second(r.agent_cpu):.0f} %",
        ),
        (
            "generator: clients CPU (% of a core)",
            lambda r: f"{100 * r.per_second(r.client_cpu):.0f} %",
        ),
        ("generator: late ticks", lambda r: f"{r.agents.late}"),
        (
            "generator: loop lag p99 agents/clients",
            lambda r: _ms(r.agents.lag, 0.99) + " / " + _ms(r.streams.lag, 0.99),
        ),
        ("collector's CPU busy", lambda r: f"{100 * r.busy_share(True):.0f} %"),
        ("  of which softirq", lambda r: f"{100 * r.busy_share(True, softirq=True):.0f} %"),
        ("generator's CPU busy", lambda r: f"{100 * r.busy_share(False):.0f} %"),
    ]
    table = [("nodes", [str(r.nodes) for r in results])]
    table += [(name, [cell(r) for r in results]) for name, cell in rows]
    width = max(len(name) for name, _ in table) + 2
    cells = max(len(c) for _, row in table for c in row) + 3
    for name, row in table:
        print(f"{name:<{width}}" + "".join(f"{c:>{cells}}" for c in row))
    small, large = min(results, key=lambda r: r.nodes), max(results, key=lambda r: r.nodes)
    if large.nodes > small.nodes:
        cpu = large.collector_cpu / small.collector_cpu
        p99 = large.streams.latency.quantile(0.99) / small.streams.latency.quantile(0.99)
        print(
            f"\n{large.nodes}/{small.nodes} nodes ({large.nodes / small.nodes:g}x the load): "
            f"collector CPU x{cpu:.1f}, event latency p99 x{p99:.1f}"
        )
    for r in results:
        if r.collector_cpus and r.busy_share(True) > SATURATED:
            print(
                f"NOTE ({r.nodes} nodes): the collector's core was {100 * r.busy_share(True):.0f} %"
                " busy: the collector was at its limit, whatever the warnings below say"
            )
        for warning in _warnings(r):
            print(f"WARNING ({r.nodes} nodes): {warning}")
    target = max(results, key=lambda r: r.nodes)
    p99 = target.streams.latency.quantile(0.99)
    cores_used = target.per_second(target.collector_cpu)
    losses = _losses(target)
    verdict = "PASS" if p99 <= TARGET_P99 and cores_used <= TARGET_CORES and not losses else "FAIL"
    print(
        f"\n{verdict}: at {target.nodes} nodes, event latency p99 {p99 * 1000:.0f} ms "
        f"(target <= {TARGET_P99 * 1000:.0f} ms), collector CPU {100 * cores_used:.0f} % "
        f"of a core (target <= {100 * TARGET_CORES:.0f} %)"
        + "".join(f", {loss}" for loss in losses)
    )


def _losses(r: Result) -> list[str]:
    """What a cluster would have lost: reports the agents must send again, events the
    clients never saw."""
    losses = []
    if r.agents.ok < r.agents.sent:
        losses.append(f"{r.agents.sent - r.agents.ok} failed reports")
    if r.streams.gaps or r.streams.resyncs:
        losses.append(f"{r.streams.gaps} lost events and {r.streams.resyncs} resyncs")
    if r.streams.disconnects:
        losses.append(f"{r.streams.disconnects} closed event streams")
    return losses


def _warnings(r: Result) -> list[str]:
    """Where the generator, or something else on the machine, may have shaped the figures."""
    warnings = []
    if r.agents.late > 0.01 * r.agents.sent:
        warnings.append(
            f"the agents fell behind ({r.agents.late} of {r.agents.sent} reports sent more than "
            f"{LATE * 1000:.0f} ms after their tick): the figures are the generator's limit"
        )
    if r.streams.lag.quantile(0.99) > CLIENT_LAG:
        warnings.append(
            f"the clients' event loops lagged (p99 {_ms(r.streams.lag, 0.99)}): part of the "
            "latency is the clients'"
        )
    if r.busy_share(False) > BUSY:
        warnings.append(
            f"the load generator's CPU was {100 * r.busy_share(False):.0f} % busy: part of the "
            "latency may be the clients waiting for it"
        )
    softirq = r.busy_share(True, softirq=True)
    others = r.busy_share(True) - r.per_second(r.collector_cpu) - softirq
    if r.collector_cpus and softirq > SOFTIRQ:
        warnings.append(
            f"{100 * softirq:.0f} % of the collector's CPU went to softirq, mostly the loopback "
            "TCP of the clients' side, which a real network would not charge to it"
        )
    if r.collector_cpus and others > OTHERS:
        warnings.append(
            f"{100 * others:.0f} % of the collector's CPU went to other processes on this machine"
        )
    if r.streams.unmatched:
        warnings.append(f"{r.streams.unmatched} events carried a pull id not made by this run")
    return warnings


def _errors(stats: AgentStats) -> str:
    bad = {k: v for k, v in stats.statuses.items() if not (k.isdigit() and 200 <= int(k) < 300)}
    return ", ".join(f"{v} x {k}" for k, v in sorted(bad.items())) or "0"


def _ms(h: Histogram, q: float) -> str:
    return f"{h.quantile(q) * 1000:.0f} ms"


def _per_client(r: Result) -> str:
    events = r.streams.events
    if not events:
        return "-"
    return f"{r.per_second(sum(events) / len(events)):.0f} (min {r.per_second(min(events)):.0f})"


def _gauges(r: Result) -> str:
    if not r.gauges:
        return "no answer"
    agents = r.gauges.get("pulltrace_agents_connected", math.nan)
    clients = r.gauges.get("pulltrace_sse_clients_active", math.nan)
    return f"{agents:.0f} / {clients:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="500,5000", help="node counts to run (default 500,5000)")
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds measured per run (default 30)"
    )
    parser.add_argument(
        "--clients", type=int, default=256, help="event stream clients (default 256)"
    )
    parser.add_argument(
        "--no-gzip",
        dest="gzip",
        action="store_false",
        help="the clients do not ask for a gzip stream (as pulltrace watch always does)",
    )
    args = parser.parse_args(argv)
    try:
        counts = sorted({int(n) for n in args.nodes.split(",")})
    except ValueError:
        parser.error(f"--nodes: not a comma-separated list of numbers: {args.nodes!r}")
    if not counts or min(counts) < 1 or max(counts) > MAX_NODES:
        parser.error(f"--nodes: between 1 and {MAX_NODES}")
    if args.duration < 5 or args.clients < 1:
        parser.error("--duration must be at least 5 and --clients at least 1")
    # The collector gets a core of its own, the load the others: "within one core" is then
    # what it can do, and the generator cannot take its CPU.
    cpus = sorted(psutil.Process().cpu_affinity() or [])
    collector_cpus = cpus[:1] if len(cpus) > 1 else []
    if collector_cpus:
        psutil.Process().cpu_affinity(cpus[1:])
    results = []
    with tempfile.TemporaryDirectory(prefix="collector-load-") as tmp:
        for nodes in counts:
            print(
                f"running {nodes} nodes, {args.clients} clients, {args.duration:g} s ...",
                file=sys.stderr,
            )
            try:
                results.append(
                    run(nodes, args.clients, args.duration, args.gzip, Path(tmp), collector_cpus)
                )
            except (BenchError, OSError, psutil.Error) as err:
                print(f"collector_load: infrastructure failure: {err}", file=sys.stderr)
                return 1
    report(results, collector_cpus, cpus, args.gzip)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
