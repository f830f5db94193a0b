"""The agent's reporting policy against a real HTTP server on loopback."""

from __future__ import annotations

from pulltrace.agent.daemon import AgentConfig, ContainerdState, Reporter
from pulltrace.model import REASON_MAX, PullStatus
from tests.report_sink import ReportSink

SOCKETS = ("/x.sock",)
UP = ContainerdState("/x.sock", 0.0, True)


def reporter(server: ReportSink, token: str = "") -> Reporter:
    config = AgentConfig(server.url, "node-a", SOCKETS, "k8s.io", interval=1.0, token=token)
    return Reporter(config)


PULL = PullStatus(id="p1", node_name="node-a", downloaded_bytes=1)


def test_sends_on_change_and_heartbeats_when_idle(sink: ReportSink) -> None:
    r = reporter(sink, token="s3cret")
    assert r.offer([], 0.0, UP)
    assert not r.offer([], 1.0, UP)
    assert r.offer([PULL], 1.5, UP)
    assert not r.offer([PULL], 2.5, UP)
    assert r.offer([PULL], 3.5, UP)
    assert len(sink.reports) == 3
    first = sink.reports[0]
    assert first["nodeName"] == "node-a" and first["pulls"] == [] and first["intervalSeconds"] == 1
    assert first["containerdReachable"] is True and first["containerdSocket"] == "/x.sock"
    assert first["containerdError"] == ""
    assert sink.reports[1]["pulls"][0]["id"] == "p1"
    assert sink.headers_seen[0]["Authorization"] == "Bearer s3cret"


def test_backs_off_while_the_collector_fails_then_sends_the_latest(sink: ReportSink) -> None:
    r = reporter(sink)
    sink.status = 503
    assert not r.offer([], 0.0, UP)
    assert not r.offer([PULL], 0.5, UP)  # within the backoff: not even attempted
    assert len(sink.reports) == 1
    assert not r.offer([PULL], 2.0, UP)
    assert r.failures == 2
    sink.status = 204
    assert r.offer([PULL], 100.0, UP)
    assert sink.reports[-1]["pulls"][0]["id"] == "p1" and r.failures == 0


def test_unreachable_collector_is_not_an_exception() -> None:
    r = Reporter(AgentConfig("http://127.0.0.1:9", "n", SOCKETS, "k8s.io"))
    assert not r.offer([], 0.0, UP)
    assert r.failures == 1


def test_containerd_going_away_is_reported_at_once_and_its_reason_bounded(
    sink: ReportSink,
) -> None:
    r = reporter(sink)
    assert r.offer([PULL], 0.0, UP)
    down = ContainerdState("/x.sock", 0.5, False, "refused " + "x" * 5000)
    assert r.offer([PULL], 0.5, down)  # same pulls, within the heartbeat: sent for the news
    report = sink.reports[-1]
    assert report["containerdReachable"] is False
    assert report["containerdError"].startswith("refused x")
    assert len(report["containerdError"]) == REASON_MAX
    assert not r.offer([PULL], 1.0, down)
    assert r.offer([PULL], 1.2, UP)
    assert sink.reports[-1]["containerdReachable"] is True
    assert sink.reports[-1]["containerdError"] == ""
