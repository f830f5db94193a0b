"""Issue 8 end to end: containerd goes away under a running agent and comes back.

The shipped ``pulltrace agent`` and ``pulltrace collector`` as processes against a real
containerd: kubelet's view (the agent's ``/readyz``), the collector's (its node goes
``degraded``, the metric drops, ``ls`` warns), and recovery, where pulls made after the restart
are seen. And the agent's choice of socket, in process with a real containerd: it finds the
daemon at whichever candidate it comes up, and follows a socket that was recreated.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from pulltrace.agent.daemon import Agent, AgentConfig
from testkit.containerd import Containerd
from testkit.cri import start_cri_pull
from testkit.images import ImagePusher
from testkit.kube.apiserver import ApiServer
from testkit.proxy import ThrottleProxy
from testkit.stack import (
    READ_TOKEN,
    EventRecorder,
    LoggedProcess,
    health_url,
    start_agent,
    start_collector,
)
from testkit.util import MiB, wait_for
from tests.report_sink import ReportSink

pytestmark = pytest.mark.e2e

NODE = "e2e-health"
WAIT = 30.0
"""An upper bound for things that take a second or two; never a duration being tested."""


def probe(url: str) -> tuple[int, dict[str, Any]]:
    reply = httpx.get(url, timeout=5.0)
    assert reply.headers["content-type"] == "application/json"
    return reply.status_code, reply.json()


def test_containerd_stopping_and_restarting_under_a_running_agent(
    throttled_containerd: Containerd,
    throttle: ThrottleProxy,
    pusher: ImagePusher,
    tmp_path: Path,
) -> None:
    daemon = throttled_containerd
    with ApiServer(token="kube") as api:
        collector = start_collector(api.kubeconfig(tmp_path / "kubeconfig"), tmp_path)
        agent: LoggedProcess | None = None
        events: EventRecorder | None = None
        try:
            events = EventRecorder(f"{collector.url}/api/v1/events", READ_TOKEN).start()
            agent = start_agent(collector.url, NODE, daemon.address, home=tmp_path)
            health = health_url(agent)
            events.wait_node(NODE, "ready", "the agent's first report")
            assert probe(f"{health}/readyz") == (
                200,
                {"status": "ready", "containerd": daemon.address},
            )

            # -- containerd dies, its socket left behind: kubelet and the collector are told --
            mark = events.node_mark()
            daemon.stop(kill=True)
            degraded = events.wait_node(NODE, "degraded", "the node to go degraded", mark)
            status, body = probe(f"{health}/readyz")
            assert status == 503
            assert (
                body["error"] == f"containerd unreachable at {daemon.address}: connection refused"
            )
            assert degraded.error == body["error"] and not degraded.containerd_reachable
            assert probe(f"{health}/healthz") == (200, {"status": "ok"})  # the loop still turns
            assert collector.metric("pulltrace_node_containerd_up", node=NODE) == 0
            with collector.client() as http:
                (listed,) = http.get("/api/v1/nodes").raise_for_status().json()["nodes"]
            assert listed["state"] == "degraded" and listed["error"] == degraded.error
            ls = subprocess.run(
                [sys.executable, "-m", "pulltrace.cli", "ls", "--server", collector.url],
                capture_output=True,
                text=True,
                timeout=60,
                env={"PULLTRACE_TOKEN": READ_TOKEN, "PATH": "/usr/bin:/bin"},
            )
            assert ls.returncode == 0, ls.stderr
            assert ls.stderr.splitlines() == [f"warning: node {NODE}: {degraded.error}"]
            warnings = [r for r in agent.records() if r["level"] == "warning"]
            assert [r["msg"] for r in warnings] == [degraded.error]

            # -- it comes back with a new socket: ready again, and pulls made now are seen -----
            mark = events.node_mark()
            daemon.start()
            events.wait_node(NODE, "ready", "the node to be ready again", mark)
            assert probe(f"{health}/readyz")[0] == 200
            image = pusher.image(2, MiB)  # a second through the throttle: seen while it pulls
            cri = start_cri_pull(daemon.address, image.ref_at(throttle.host_port))
            seen = events.wait_event(
                lambda e: e.pull.manifest_digest == image.manifest_digest,
                "the pull after the restart",
                WAIT,
            )
            cri.wait(60)
            assert seen.node_name == NODE and seen.pull.total_bytes == sum(image.layer_sizes)
            assert collector.metric("pulltrace_node_containerd_up", node=NODE) == 1
            logged = [(r["level"], r["msg"]) for r in collector.process.records()]
            assert [m for level, m in logged if level == "warning"] == [
                f"node degraded: {degraded.error}"
            ]
            assert ("info", "node ready") in logged
        finally:
            codes = {"agent": agent.stop() if agent is not None else 0}
            codes["collector"] = collector.stop()
            if events is not None:
                events.close()
    assert codes == {"agent": 0, "collector": 0}


def reported(sink: ReportSink, digest: str, phase: str) -> bool:
    return any(
        p["manifestDigest"] == digest and p["phase"] == phase
        for report in sink.snapshot()
        for p in report["pulls"]
    )


def test_the_agent_finds_containerd_where_it_comes_up_and_follows_a_recreated_socket(
    throttled_containerd: Containerd,
    throttle: ThrottleProxy,
    pusher: ImagePusher,
    sink: ReportSink,
    tmp_path: Path,
) -> None:
    """As on a k3s node, where the standard socket never appears, and containerd starts after
    the agent. The agent's own loop runs in a thread, as in the process."""
    daemon = throttled_containerd
    daemon.stop()
    standard = str(tmp_path / "standard.sock")
    config = AgentConfig(sink.url, NODE, (standard, daemon.address), "k8s.io", interval=0.1)
    agent = Agent(config)
    loop = threading.Thread(target=agent.run, name="agent", daemon=True)
    loop.start()
    try:
        missing = f"containerd unreachable at {standard}: no such socket (is containerd running?)"
        wait_for(lambda: agent.readiness() == (503, {"error": missing}), WAIT, "a first poll")
        wait_for(lambda: sink.snapshot(), WAIT, "a report while containerd is down")
        first = sink.snapshot()[0]
        assert (first["containerdReachable"], first["containerdSocket"]) == (False, standard)
        assert first["containerdError"] == "no such socket (is containerd running?)"

        daemon.start()
        wait_for(lambda: agent.readiness()[0] == 200, WAIT, "containerd at the other candidate")
        assert agent.client.path == daemon.address
        assert sink.snapshot()[-1]["containerdReachable"] is True

        # Killed: the old socket file stays until the new daemon replaces it with its own.
        daemon.restart(kill=True)
        image = pusher.image(2, MiB)  # a second through the throttle: seen while it pulls
        cri = start_cri_pull(daemon.address, image.ref_at(throttle.host_port))
        digest = image.manifest_digest
        wait_for(lambda: reported(sink, digest, "pulling"), WAIT, "the pull after the restart")
        cri.wait(60)
        assert agent.readiness()[0] == 200
    finally:
        agent.stop.set()
        loop.join(WAIT)
    assert not loop.is_alive()
