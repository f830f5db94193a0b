"""The agent's reporting policy against a real HTTP server on loopback."""

from __future__ import annotations

from pulltrace.agent import AgentConfig, Reporter
from pulltrace.model import PullStatus
from tests.report_sink import ReportSink


def reporter(server: ReportSink, token: str = "") -> Reporter:
    config = AgentConfig(server.url, "node-a", "/x.sock", "k8s.io", interval=1.0, token=token)
    return Reporter(config)


PULL = PullStatus(id="p1", node_name="node-a", downloaded_bytes=1)


def test_sends_on_change_and_heartbeats_when_idle(sink: ReportSink) -> None:
    r = reporter(sink, token="s3cret")
    assert r.offer([], 0.0)
    assert not r.offer([], 1.0)
    assert r.offer([PULL], 1.5)
    assert not r.offer([PULL], 2.5)
    assert r.offer([PULL], 3.5)
    assert len(sink.reports) == 3
    first = sink.reports[0]
    assert first["nodeName"] == "node-a" and first["pulls"] == [] and first["intervalSeconds"] == 1
    assert sink.reports[1]["pulls"][0]["id"] == "p1"
    assert sink.headers_seen[0]["Authorization"] == "Bearer s3cret"


def test_backs_off_while_the_collector_fails_then_sends_the_latest(sink: ReportSink) -> None:
    r = reporter(sink)
    sink.status = 503
    assert not r.offer([], 0.0)
    assert not r.offer([PULL], 0.5)  # within the backoff: not even attempted
    assert len(sink.reports) == 1
    assert not r.offer([PULL], 2.0)
    assert r.failures == 2
    sink.status = 204
    assert r.offer([PULL], 100.0)
    assert sink.reports[-1]["pulls"][0]["id"] == "p1" and r.failures == 0


def test_unreachable_collector_is_not_an_exception() -> None:
    r = Reporter(AgentConfig("http://127.0.0.1:9", "n", "/x.sock", "k8s.io"))
    assert not r.offer([], 0.0)
    assert r.failures == 1
