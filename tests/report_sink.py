"""A stand-in for the collector's report endpoint: a real HTTP server on loopback that keeps
every report, so agent tests check what went over the wire, not what a mock was told."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar


class ReportSink(ThreadingHTTPServer):
    status = 204

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reports: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.reports)


class _Handler(BaseHTTPRequestHandler):
    server: ReportSink

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.reports.append(json.loads(body))
            self.server.headers_seen.append(dict(self.headers))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


Server = TypeVar("Server", bound=ThreadingHTTPServer)


def serve(server: Server) -> Iterator[Server]:
    """Serves in a thread of its own until the caller is done with it."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def serve_sink() -> Iterator[ReportSink]:
    yield from serve(ReportSink())
