"""The agent's probe endpoints, ``GET /healthz`` and ``GET /readyz``, for kubelet.

The standard library's threaded HTTP server, not uvicorn: the agent runs on every node, and two
GETs every ten seconds do not need an ASGI stack. Every request is bounded: a few seconds to
arrive, the request line and headers at the standard library's limits, no body read, the
connection closed after one answer, and at most ``MAX_CONNECTIONS`` handled at once (more are
closed unanswered, and kubelet retries).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("pulltrace.agent.daemon")

Probe = Callable[[], tuple[int, dict[str, str]]]
"""An HTTP status and the JSON object to answer with."""
MAX_CONNECTIONS = 16
REQUEST_TIMEOUT = 5.0


class ProbeServer:
    """Serves ``probes`` (path -> probe) on an already listening socket, in a daemon thread."""

    def __init__(self, sock: socket.socket, probes: Mapping[str, Probe]) -> None:
        sock.setblocking(True)
        self._server = _Server(sock, probes)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.socket.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> ProbeServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket, probes: Mapping[str, Probe]) -> None:
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()  # the one the base class made; ``sock`` is bound already
        self.socket = sock
        self.server_address = sock.getsockname()
        self.probes = probes
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT
    server_version = "pulltrace-agent"

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        probe = self._probe()
        if probe is not None:
            status, body = probe()
            self._reply(status, body)

    def _not_allowed(self) -> None:
        if self._probe() is not None:
            self._reply(405, {"error": f"method {self.command} is not allowed; use GET"})

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _probe(self) -> Probe | None:
        """The probe the path names; None once a 404 has been sent."""
        path = self.path.partition("?")[0]
        probe = self.server.probes.get(path)
        if probe is None:
            self._reply(404, {"error": f"no such endpoint: {self.command} {path[:200]}"})
        return probe

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests too get a JSON answer, not the standard library's HTML page,
        with a status line even when the request line was too broken to name a version."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        self._reply(code, {"error": message or HTTPStatus(code).phrase})

    def _reply(self, status: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """kubelet probes every few seconds: not worth a line each. Errors go to debug."""
        log.debug(format % args, extra={"client": self.client_address[0]})
