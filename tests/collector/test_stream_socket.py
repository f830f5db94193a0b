"""The event stream's connections have a capped kernel send buffer."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable

from pulltrace.collector.stream import SEND_BUFFER
from tests.collector.conftest import Running


def served_socket_buffer(local: tuple[str, int], peer: tuple[str, int]) -> int | None:
    """SO_SNDBUF of this process's socket connected from ``local`` to ``peer``, if any."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        with contextlib.suppress(OSError):
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            with socket.socket(fileno=os.dup(fd)) as sock:
                if sock.getsockname()[:2] == local and sock.getpeername()[:2] == peer:
                    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    return None


def test_a_stream_is_served_on_a_socket_with_a_capped_send_buffer(
    launch: Callable[..., Running],
) -> None:
    running = launch()
    with socket.create_connection(("127.0.0.1", running.service.api_port), timeout=15) as client:
        client.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: collector\r\n\r\n")
        assert client.recv(4096).startswith(b"HTTP/1.1 200")
        server_end = client.getpeername()[:2]
        buffer = served_socket_buffer(server_end, client.getsockname()[:2])
    # Linux doubles a set buffer for its bookkeeping; left alone it would say 16 KiB to 4 MiB
    assert buffer == 2 * SEND_BUFFER
