"""The HTTP limits against hostile peers on raw sockets, with the real collector under uvicorn:
each peer is cut off within its limit (a generous bound: these are liveness checks, not timing
benchmarks), ``/healthz`` keeps answering meanwhile, and no file descriptor is left behind."""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import httpx
import pytest

from pulltrace.collector.protocol import HttpLimits
from pulltrace.collector.server import process_limits
from tests.collector.conftest import FAST, Running, body, pull, start

LIMITS = HttpLimits(
    header_timeout=1.5,
    body_timeout=1.5,
    keep_alive_timeout=1,
    linger_timeout=2.0,
    max_connections=16,
)
SLACK = 10.0
"""Seconds past a limit before a test calls the connection held: generous, for a loaded CI."""
REPORT_HEAD = (
    b"POST /api/v1/report HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\n"
)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def serve() -> Iterator[Callable[[HttpLimits], Running]]:
    """Starts a collector with the given limits; at the end of the test, once the collector
    holds no connection, the process has no more file descriptors open than it had before
    the test's peers came."""
    started: list[tuple[Running, int]] = []

    def _serve(limits: HttpLimits) -> Running:
        running = start(FAST, limits=limits)
        assert healthy(running)
        assert wait_for(lambda: idle(running))
        started.append((running, open_fds()))
        return running

    yield _serve
    try:
        for running, baseline in started:
            assert wait_for(functools.partial(idle, running)), "connections still held"
            assert open_fds() <= baseline, f"{open_fds() - baseline} file descriptors leaked"
    finally:
        for running, _ in started:
            running.stop()


def idle(running: Running) -> bool:
    """The collector holds no connection (its listening sockets aside)."""
    return not running.service._api.server_state.connections


@pytest.fixture
def collector(serve: Callable[[HttpLimits], Running]) -> Running:
    return serve(LIMITS)


def healthy(running: Running) -> bool:
    """``/healthz`` answers 200 within a few seconds, on a connection of its own."""
    with httpx.Client(timeout=5.0) as client:
        return client.get(f"{running.url}/healthz").status_code == 200


def connect(running: Running) -> socket.socket:
    return socket.create_connection(("127.0.0.1", running.service.api_port), timeout=5.0)


def read_until_closed(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes the connection; fails when it is still open
    after ``within`` seconds."""
    deadline = time.monotonic() + within
    data = b""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    pytest.fail(f"the connection is still open after {within:.0f} s")


def trickle_until_closed(
    sock: socket.socket, data: bytes, within: float, running: Running
) -> tuple[int, bytes]:
    """Sends ``data`` one byte a second until the server closes the connection; checks
    ``/healthz`` after the second byte. Returns the bytes sent and what the server said."""
    deadline = time.monotonic() + within
    checked = False
    for sent, byte in enumerate(data):
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return sent, b""
        sock.settimeout(1.0)
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            answer = None
        except ConnectionResetError:
            return sent + 1, b""
        if answer is not None:
            return sent + 1, answer + read_until_closed(sock, SLACK)
        if sent >= 1 and not checked:
            assert healthy(running), "/healthz did not answer while a peer trickled"
            checked = True
        assert time.monotonic() < deadline, f"the connection is still open after {within:.0f} s"
    pytest.fail("the whole request went through one byte a second")


def test_headers_sent_one_byte_a_second_are_cut_off(collector: Running) -> None:
    with connect(collector) as sock:
        head = b"GET /healthz HTTP/1.1\r\nHost: collector\r\n" + b"X-Slow: y\r\n" * 100
        sent, answer = trickle_until_closed(sock, head, LIMITS.header_timeout + SLACK, collector)
    assert answer == b""
    assert sent < len(head)


def test_a_body_sent_one_byte_a_second_is_cut_off(collector: Running) -> None:
    payload = body("node-a", [pull("a1")])
    with connect(collector) as sock:
        sock.sendall(REPORT_HEAD + b"Content-Length: %d\r\n\r\n" % len(payload))
        sent, answer = trickle_until_closed(sock, payload, LIMITS.body_timeout + SLACK, collector)
    assert answer == b""
    assert sent < len(payload)
    assert httpx.get(f"{collector.url}/api/v1/pulls").json()["pulls"] == []


def test_a_connection_that_sends_nothing_is_closed(collector: Running) -> None:
    with connect(collector) as sock:
        assert healthy(collector)
        assert read_until_closed(sock, LIMITS.header_timeout + SLACK) == b""


def test_a_half_closed_request_is_closed(collector: Running) -> None:
    with connect(collector) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: coll")
        sock.shutdown(socket.SHUT_WR)
        assert read_until_closed(sock, SLACK) == b""


def test_a_partial_request_left_hanging_is_closed(collector: Running) -> None:
    with connect(collector) as sock:
        sock.sendall(REPORT_HEAD + b"Content-Length: 1000\r\n\r\n{")
        assert healthy(collector)
        assert read_until_closed(sock, LIMITS.body_timeout + SLACK) == b""


def test_an_idle_kept_alive_connection_is_closed(collector: Running) -> None:
    with connect(collector) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: collector\r\n\r\n")
        answer = read_until_closed(sock, LIMITS.keep_alive_timeout + SLACK)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" not in answer.lower()  # kept alive, until idle too long


def test_a_kept_alive_connection_serves_the_next_request(collector: Running) -> None:
    """The header deadline starts again with each request, so a connection in steady use,
    as an agent's is, is never cut off."""
    peers = set()
    with httpx.Client(base_url=collector.url, timeout=5.0) as client:
        for _ in range(4):
            reply = client.get("/healthz")
            assert reply.status_code == 200
            peers.add(reply.extensions["network_stream"].get_extra_info("client_addr"))
            time.sleep(LIMITS.keep_alive_timeout / 2)
    assert len(peers) == 1


def test_sixteen_mib_of_headers_are_refused(collector: Running) -> None:
    line = b"X-Pad: " + b"a" * 8000 + b"\r\n"
    head = b"GET /healthz HTTP/1.1\r\nHost: collector\r\n" + line * (16 * 1024 * 1024 // len(line))
    with connect(collector) as sock:
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            sock.sendall(head)
        try:
            answer = read_until_closed(sock, SLACK)
        except ConnectionResetError:
            answer = b""
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
    assert healthy(collector)


@pytest.mark.parametrize(("size", "status"), [(60 * 1024, 200), (70 * 1024, 431)])
def test_the_header_limit_holds_when_the_head_arrives_in_one_read(
    collector: Running, size: int, status: int
) -> None:
    """A head that arrives whole, in one read, is checked too."""
    start = b"GET /healthz HTTP/1.1\r\nHost: collector\r\nConnection: close\r\nX-Pad: "
    head = start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"
    with connect(collector) as sock:
        sock.sendall(head)
        answer = read_until_closed(sock, SLACK)
    assert answer.startswith(b"HTTP/1.1 %d " % status)


def test_a_refused_endless_body_is_not_read(collector: Running) -> None:
    """A chunked body that never ends: the 413 comes once it passes 1 MiB, and the connection
    ends soon after, however fast the peer goes on sending."""
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    stop = threading.Event()
    sent = [0]

    def flood(sock: socket.socket) -> None:
        try:
            while not stop.is_set():
                sock.sendall(chunk)
                sent[0] += len(chunk)
        except OSError:
            return

    with connect(collector) as sock:
        sock.sendall(REPORT_HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        sender = threading.Thread(target=flood, args=(sock,), daemon=True)
        sender.start()
        try:
            assert healthy(collector)
            answer = read_until_closed(sock, LIMITS.linger_timeout + SLACK)
        finally:
            stop.set()
            sender.join(timeout=SLACK)
    assert not sender.is_alive()
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in head.lower()
    assert b"larger than 1 MiB" in rest


def test_a_refused_body_of_known_length_still_gets_its_answer(collector: Running) -> None:
    """httpx, as the agent uses it, is still writing when the 413 comes: the answer must reach
    it, not a reset."""
    with httpx.Client(timeout=SLACK) as client:
        reply = client.post(f"{collector.url}/api/v1/report", content=b" " * (2 << 20))
    assert reply.status_code == 413
    assert reply.headers["connection"] == "close"


def test_idle_connections_up_to_the_cap(serve: Callable[[HttpLimits], Running]) -> None:
    """With a header deadline long enough for the idle peers to stay: the connection that
    reaches the cap gets a 503, one past it is closed unread, and ``/healthz`` answers again
    as soon as a slot is free."""
    collector = serve(replace(LIMITS, header_timeout=120.0))
    cap = LIMITS.max_connections
    peers = [connect(collector) for _ in range(cap - 2)]
    try:
        assert healthy(collector)  # on the cap - 1st connection
        peers.append(connect(collector))
        at_cap = connect(collector)
        peers.append(at_cap)
        with connect(collector) as past_cap:
            past_cap.sendall(b"GET /healthz HTTP/1.1\r\nHost: collector\r\n\r\n")
            assert read_until_closed(past_cap, SLACK) == b""
        at_cap.sendall(b"GET /healthz HTTP/1.1\r\nHost: collector\r\n\r\n")
        answer = read_until_closed(at_cap, SLACK)
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"connection: close" in answer.lower()
        peers.pop().close()
        peers.pop().close()
        assert healthy(collector)
    finally:
        for sock in peers:
            sock.close()


def test_idle_connections_past_the_cap_are_cut_off_by_the_header_deadline(
    collector: Running,
) -> None:
    """Peers that fill the cap and say nothing keep ``/healthz`` out only until the header
    deadline frees their slots."""
    idle = [connect(collector) for _ in range(LIMITS.max_connections + 4)]
    try:
        for sock in idle:
            assert read_until_closed(sock, LIMITS.header_timeout + SLACK) == b""
        assert healthy(collector)
    finally:
        for sock in idle:
            sock.close()


def test_the_connection_cap_fits_the_file_descriptor_limit() -> None:
    assert process_limits(1024).max_connections == 1024 - 256
    assert process_limits(1 << 20).max_connections == HttpLimits().max_connections
    assert process_limits(100).max_connections == 16
