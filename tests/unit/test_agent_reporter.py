"""The agent's reporting policy against a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pulltrace.agent import AgentConfig, Reporter
from pulltrace.model import PullStatus


class Collector(ThreadingHTTPServer):
    status = 204
    reports: list[dict[str, Any]]
    headers_seen: list[dict[str, str]]


class Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.reports.append(json.loads(body))
        self.server.headers_seen.append(dict(self.headers))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector(("127.0.0.1", 0), Handler)
    server.reports, server.headers_seen = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def reporter(server: Collector, token: str = "") -> Reporter:
    url = f"http://127.0.0.1:{server.server_address[1]}"
    return Reporter(AgentConfig(url, "node-a", "/x.sock", "k8s.io", interval=1.0, token=token))


PULL = PullStatus(id="p1", node_name="node-a", downloaded_bytes=1)


def test_sends_on_change_and_heartbeats_when_idle(collector: Collector) -> None:
    r = reporter(collector, token="s3cret")
    assert r.offer([], 0.0)
    assert not r.offer([], 1.0)
    assert r.offer([PULL], 1.5)
    assert not r.offer([PULL], 2.5)
    assert r.offer([PULL], 3.5)
    assert len(collector.reports) == 3
    first = collector.reports[0]
    assert first["nodeName"] == "node-a" and first["pulls"] == [] and first["intervalSeconds"] == 1
    assert collector.reports[1]["pulls"][0]["id"] == "p1"
    assert collector.headers_seen[0]["Authorization"] == "Bearer s3cret"


def test_backs_off_while_the_collector_fails_then_sends_the_latest(collector: Collector) -> None:
    r = reporter(collector)
    collector.status = 503
    assert not r.offer([], 0.0)
    assert not r.offer([PULL], 0.5)  # within the backoff: not even attempted
    assert len(collector.reports) == 1
    assert not r.offer([PULL], 2.0)
    assert r.failures == 2
    collector.status = 204
    assert r.offer([PULL], 100.0)
    assert collector.reports[-1]["pulls"][0]["id"] == "p1" and r.failures == 0


def test_unreachable_collector_is_not_an_exception() -> None:
    r = Reporter(AgentConfig("http://127.0.0.1:9", "n", "/x.sock", "k8s.io"))
    assert not r.offer([], 0.0)
    assert r.failures == 1
