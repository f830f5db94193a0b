"""The agent's reporting policy against a real HTTP server on loopback."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pulltrace.agent.daemon import AgentConfig, ContainerdState, Reporter
from pulltrace.errors import UsageError
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


def test_a_token_with_a_trailing_newline_is_sent_without_it(sink: ReportSink) -> None:
    """As ``kubectl create secret --from-file`` leaves it."""
    r = reporter(sink, token="  s3cret\r\n")
    assert r.offer([], 0.0, UP)
    assert sink.headers_seen[0]["Authorization"] == "Bearer s3cret"
    assert sink.headers_seen[0]["Pulltrace-Node"] == "node-a"


@pytest.mark.parametrize("token", ["s3\x1bcret", "s3cret\nsecond-line", "s3 cret", "sécret"])
def test_a_token_that_cannot_be_sent_is_refused_at_start(token: str) -> None:
    with pytest.raises(UsageError, match=r"^PULLTRACE_AGENT_TOKEN: character \d+ of the token"):
        AgentConfig("http://127.0.0.1:9", "node-a", SOCKETS, "k8s.io", token=token)


def test_the_agent_command_refuses_such_a_token_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULLTRACE_")}
    env.update(HOME=str(tmp_path), PULLTRACE_AGENT_TOKEN="s3\x07cret\n")
    argv = [sys.executable, "-m", "pulltrace.cli", "agent", "--server", "http://127.0.0.1:9"]
    argv += ["--node", "node-a", "--health-listen", "off"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "pulltrace: PULLTRACE_AGENT_TOKEN: character 3 of the token is '\\x07'; "
        "a bearer token is printable ASCII without spaces"
    ]


def test_a_refused_token_is_logged_once_and_the_agent_carries_on(
    sink: ReportSink, caplog: pytest.LogCaptureFixture
) -> None:
    r = reporter(sink, token="wrong")
    sink.status = 401
    with caplog.at_level(logging.INFO, logger="pulltrace.agent.daemon"):
        now = 0.0
        for _ in range(5):
            assert not r.offer([PULL], now, UP)
            now += 100.0  # past any back-off
        sink.status = 403
        for _ in range(3):
            assert not r.offer([PULL], now, UP)
            now += 100.0
        sink.status = 204
        assert r.offer([PULL], now, UP)
    lines = [(rec.levelno, rec.getMessage()) for rec in caplog.records]
    assert lines == [
        (logging.WARNING, "collector refused the agent's token (401)"),
        (logging.WARNING, "collector refused the agent's token (403)"),
        (logging.INFO, "collector accepts the agent's token again"),
    ]
    assert len(sink.reports) == 9 and r.failures == 0 and r.refusal == ""


@pytest.mark.parametrize(
    ("node", "interval", "flag"),
    [
        ("node-a", 0.05, "--interval"),
        ("node-a", 301.0, "--interval"),
        ("bad node", 1.0, "--node"),
        ("node-a/x", 1.0, "--node"),
        ("n" * 254, 1.0, "--node"),
        ("node\x1b[2J", 1.0, "--node"),
    ],
)
def test_what_every_report_would_be_refused_for_is_refused_at_start(
    node: str, interval: float, flag: str
) -> None:
    with pytest.raises(UsageError) as refused:
        AgentConfig("http://127.0.0.1:9", node, SOCKETS, "k8s.io", interval=interval)
    assert str(refused.value).startswith(f"{flag}: ")
    assert str(refused.value).isprintable() and len(str(refused.value)) < 300
