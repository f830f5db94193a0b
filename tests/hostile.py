"""A collector impostor on a real loopback socket: a tiny threaded TCP server that answers each
path with a scripted misbehaviour (trickle, endless body, endless line, garbage, deep nesting,
wrong content type, an HTML error page), or with a plain good answer.

It speaks just enough HTTP to be misread: it reads the request head, then writes whatever the
behaviour writes, byte by byte if need be, until the client hangs up or the server stops.
``run_bounded`` runs a command against it as a child process and measures what the hostile
tests assert: how long until it exited, its peak memory, and what it printed. The peak is
``VmHWM`` sampled from ``/proc`` every 50 ms once the child has exec'd: ``ru_maxrss`` would be
exact, but Linux carries the forking parent's high-water mark into the child's, so under a
test runner that has grown it measures the runner. A blow-up to the sizes these tests guard
against takes far longer than a sample.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

Behaviour = Callable[[socket.socket, threading.Event], None]

CHUNK = 64 * 1024
TRICKLE_GAP = 0.2


def _head(status: str, content_type: str, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nConnection: close\r\n{extra}\r\n"
    ).encode()


def answer(status: str, content_type: str, body: bytes) -> Behaviour:
    """A whole, well-formed answer."""

    def behave(sock: socket.socket, stop: threading.Event) -> None:
        extra = f"Content-Length: {len(body)}\r\n"
        sock.sendall(_head(status, content_type, extra) + body)

    return behave


def _forever(sock: socket.socket, stop: threading.Event, piece: bytes, gap: float = 0) -> None:
    while not stop.is_set():
        sock.sendall(piece)
        if gap:
            stop.wait(gap)


def trickle_head() -> Behaviour:
    """A status line, then one byte of headers every ``TRICKLE_GAP`` seconds, forever: every
    read returns something, so only a total deadline ends it."""

    def behave(sock: socket.socket, stop: threading.Event) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\n")
        _forever(sock, stop, b"X", TRICKLE_GAP)

    return behave


def trickle_body(content_type: str, start: bytes = b"") -> Behaviour:
    """Good headers, then the body one byte at a time."""

    def behave(sock: socket.socket, stop: threading.Event) -> None:
        sock.sendall(_head("200 OK", content_type) + start)
        _forever(sock, stop, b" ", TRICKLE_GAP)

    return behave


def endless(content_type: str, start: bytes, piece: bytes) -> Behaviour:
    """Good headers, ``start``, then ``piece`` as fast as the client reads, forever."""

    def behave(sock: socket.socket, stop: threading.Event) -> None:
        sock.sendall(_head("200 OK", content_type) + start)
        _forever(sock, stop, piece * max(1, CHUNK // len(piece)))

    return behave


def garbage() -> Behaviour:
    """Bytes that are not HTTP at all, then a hang-up."""

    def behave(sock: socket.socket, stop: threading.Event) -> None:
        sock.sendall(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(4096))

    return behave


def nested(depth: int = 200_000) -> bytes:
    return b"[" * depth + b"]" * depth


HOSTILE_REST: dict[str, Behaviour] = {
    "trickle": trickle_head(),
    "trickle-body": trickle_body("application/json", b'{"schemaVersion": "v1", "pulls": ['),
    "endless-body": endless("application/json", b'{"schemaVersion": "v1", "pulls": [', b"[0],"),
    "endless-line": endless("application/json", b'{"pulls": "', b"x"),
    "garbage": garbage(),
    "deep-nesting": answer("200 OK", "application/json", b'{"pulls": ' + nested() + b"}"),
    "nested-error": answer("500 Oops", "application/json", b'{"error": ' + nested() + b"}"),
    "wrong-type": answer("200 OK", "text/html", b"<html><body>pulls</body></html>"),
    "html-5xx": answer("502 Bad Gateway", "text/html", b"<html>\n<h1>502</h1>\x1b[31m</html>"),
}
"""Answers to a one-shot GET that no command may turn into a hang, a traceback or a heap."""

SSE = "text/event-stream"
HOSTILE_STREAM: dict[str, Behaviour] = {
    "trickle": trickle_head(),
    "trickle-body": trickle_body(SSE, b"event: snapshot\ndata: "),
    "endless-body": endless(SSE, b"", b"data: 1\n"),
    "endless-line": endless(SSE, b"event: snapshot\ndata: ", b"x"),
    "garbage": garbage(),
    "deep-nesting": answer("200 OK", SSE, b"event: snapshot\ndata: " + nested() + b"\n\n"),
    "nested-error": answer("500 Oops", "application/json", b'{"error": ' + nested() + b"}"),
    "wrong-type": answer("200 OK", "text/html", b"<html><body>events</body></html>"),
    "html-5xx": answer("502 Bad Gateway", "text/html", b"<html>\n<h1>502</h1></html>"),
}
"""Answers to the live stream's GET: each must end the attempt with one line, in bounded time."""

EMPTY_LIST = answer("200 OK", "application/json", b'{"schemaVersion": "v1", "pulls": []}')
NOT_FOUND = answer("404 Not Found", "application/json", b'{"error": "no such path"}')


class FakeServer:
    """Answers each request by its path (query left out) from ``routes``; unknown paths 404."""

    def __init__(self, routes: Mapping[str, Behaviour]) -> None:
        self.routes = dict(routes)
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # so that the accept loop sees the stop at once
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, name="fake-server", daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            target = head.split(b" ", 2)[1].decode("latin-1") if head.count(b" ") >= 2 else "/"
            path = target.split("?")[0]
            self.requests.append(target)
            with contextlib.suppress(OSError):  # the client hung up: what it should do
                self.routes.get(path, NOT_FOUND)(conn, self._stop)


@dataclass
class Outcome:
    code: int | None
    """None: still running at the bound, and killed."""
    seconds: float
    max_rss_mib: float
    stdout: str
    stderr: str


def run_bounded(args: Sequence[str], bound: float, env: Mapping[str, str] | None = None) -> Outcome:
    """``args`` as a child process in its own group, killed at ``bound`` seconds."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PULLTRACE_", "GITHUB_"))}
    clean["KUBECONFIG"] = "/nonexistent"
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            list(args), stdout=out, stderr=err, env={**clean, **(env or {})}, start_new_session=True
        )
        code: int | None = None
        rss_kib = 0
        argv = "\0".join(args).encode() + b"\0"
        while True:
            rss_kib = max(rss_kib, _high_water_kib(proc.pid, argv))
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() - started > bound:
                os.killpg(proc.pid, signal.SIGKILL)
                os.waitpid(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = code if code is not None else -9  # reaped here, not by Popen
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return Outcome(
            code,
            seconds,
            rss_kib / 1024,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )


def _high_water_kib(pid: int, argv: bytes) -> int:
    """The child's own peak RSS so far, 0 before it has exec'd ``argv`` or once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if cmdline.read() != argv:
                return 0
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def pulltrace(*args: str) -> list[str]:
    return [sys.executable, "-m", "pulltrace.cli", *args]
