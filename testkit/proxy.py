"""A loopback TCP proxy that throttles what the registry sends back, to slow pulls down.

Pull-progress tests need downloads that last seconds at a speed the test knows, and a way to cut
a pull off mid-layer. One token bucket is shared by every connection, so the configured rate is
the true aggregate rate however many layers containerd fetches in parallel.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Coroutine
from typing import Any

from .util import Managed

MAX_CHUNK = 16 * 1024
MIN_CHUNK = 1024
_UNTHROTTLED_CHUNK = 64 * 1024
_MAX_WAIT = 0.05  # re-read the rate at least this often, so set_rate() takes effect at once


class TokenBucket:
    """Shared by all connections; thread-safe so tests can change the rate from outside the loop.

    A taker may drive the balance negative (debt) and the next taker waits the debt off; that
    keeps every chunk moving without splitting it, and the long-run rate exact.
    """

    def __init__(self, rate: float | None, burst: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rate = rate
        self._burst = burst
        self._tokens = float(self.burst)
        self._last = time.monotonic()

    @property
    def rate(self) -> float | None:
        return self._rate

    @property
    def burst(self) -> int:
        if self._burst is not None:
            return self._burst
        return self.chunk_size()

    def chunk_size(self) -> int:
        """About 1/50 s of data, so the rate looks smooth even over short windows."""
        rate = self._rate
        if rate is None:
            return _UNTHROTTLED_CHUNK
        return max(MIN_CHUNK, min(MAX_CHUNK, int(rate / 50)))

    def set_rate(self, rate: float | None) -> None:
        """``None`` is unthrottled, ``0`` pauses every download until the rate is raised."""
        with self._lock:
            self._refill(time.monotonic())
            self._rate = rate
            self._tokens = min(self._tokens, float(self.burst))

    def _refill(self, now: float) -> None:
        rate = self._rate
        if rate is not None and rate > 0:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * rate)
        self._last = now

    def try_take(self, n: int) -> float:
        """Takes ``n`` bytes and returns 0, or returns how long to wait before asking again."""
        with self._lock:
            rate = self._rate
            if rate is None:
                return 0.0
            now = time.monotonic()
            self._refill(now)
            if rate > 0 and self._tokens >= 0:
                self._tokens -= n
                return 0.0
            if rate <= 0:
                return _MAX_WAIT
            return min(_MAX_WAIT, max(-self._tokens / rate, 0.001))


class ThrottleProxy(Managed):
    """asyncio in a background thread; ``target`` is the upstream ``host:port``."""

    def __init__(
        self,
        target: str,
        rate: float | None = None,
        *,
        burst: int | None = None,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """``tls``: accept TLS with this context and relay the plain bytes to ``target``;
        ``host``: the address to listen on."""
        target_host, _, target_port = target.rpartition(":")
        self.target_host = target_host
        self.target_port = int(target_port)
        self.bucket = TokenBucket(rate, burst)
        self.port = port
        self.tls = tls
        self.host = host
        self.bytes_forwarded = 0  # server -> client (HTTP headers included): what pulls downloaded
        self.bytes_upstream = 0  # client -> server
        self.connections_total = 0
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="throttle", daemon=True)
        self._thread.start()

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def rate(self) -> float | None:
        return self.bucket.rate

    def set_rate(self, rate: float | None) -> None:
        self.bucket.set_rate(rate)

    @property
    def active_connections(self) -> int:
        return len(self._conns)

    @property
    def listening(self) -> bool:
        return self._server is not None

    def _call(self, coro: Coroutine[Any, Any, None], timeout: float = 10.0) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> ThrottleProxy:
        """Starts listening; after ``kill()`` it listens again on the same port (a recovery)."""
        self._call(self._listen())
        return self

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, reuse_address=True, ssl=self.tls
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def kill(self) -> None:
        """Resets every live connection and stops accepting, like a registry vanishing mid-pull."""
        self._call(self._kill())

    async def _kill(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for client, upstream in list(self._conns):
            _abort(client)
            _abort(upstream)
        self._conns.clear()
        # Let the handlers see their aborted sockets and finish, so none outlives the loop.
        if self._handlers:
            _, pending = await asyncio.wait(list(self._handlers), timeout=5)
            for task in pending:
                task.cancel()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self.kill()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        me = asyncio.current_task()
        assert me is not None
        self._handlers.add(me)
        try:
            await self._proxy(client_r, client_w)
        finally:
            self._handlers.discard(me)

    async def _proxy(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _abort(client_w)
            return
        pair = (client_w, up_w)
        self._conns.add(pair)
        tasks = [
            asyncio.create_task(self._pump_up(client_r, up_w)),
            asyncio.create_task(self._pump_down(up_r, client_w)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if pair in self._conns:
                self._conns.discard(pair)
                client_w.close()
                up_w.close()

    async def _pump_up(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(_UNTHROTTLED_CHUNK):
            self.bytes_upstream += len(data)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()

    async def _pump_down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(self.bucket.chunk_size()):
            while (wait := self.bucket.try_take(len(data))) > 0:
                await asyncio.sleep(wait)
            self.bytes_forwarded += len(data)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Linger 0 makes the close an RST, so the peer sees a reset rather than a clean EOF."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
