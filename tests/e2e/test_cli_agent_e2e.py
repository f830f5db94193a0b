"""The shipped commands, run as processes against a real containerd: `pulltrace ls` in local
mode and `pulltrace agent` reporting over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from testkit.containerd import Containerd
from testkit.cri import start_cri_pull
from testkit.images import ImagePusher, PushedImage
from testkit.proxy import ThrottleProxy
from testkit.util import MiB, terminate_group, wait_for
from tests.report_sink import ReportSink

pytestmark = pytest.mark.e2e

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def pulltrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pulltrace.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ls_json_during_a_pull_validates_against_the_schema(
    containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    image = pusher.image(2, 3 * MiB)
    pull = start_cri_pull(containerd.address, image.ref_at(throttle.host_port))
    wait_for(lambda: containerd.active_ingests(), 10, "the pull to start")
    out = pulltrace("ls", "--containerd", f"unix://{containerd.address}", "--json", "-o", "json")
    table = pulltrace("ls", "--containerd", containerd.address, "--sample", "100ms")
    pull.wait(60)

    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    listing = json.loads(out.stdout)
    schema = json.loads((SCHEMAS / "pull-list.v1.json").read_text())
    jsonschema.validate(listing, schema)
    mine = [p for p in listing["pulls"] if p["manifestDigest"] == image.manifest_digest]
    assert len(mine) == 1
    assert mine[0]["phase"] == "pulling"
    assert mine[0]["totalBytes"] == sum(image.layer_sizes)
    assert mine[0]["bytesPerSec"] > 0 and mine[0]["etaSeconds"] > 0

    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[0] == "IMAGE"
    assert any(image.repo in row and "pulling" in row for row in rows), table.stdout


def start_agent(
    sink: ReportSink, address: str, logs: list[dict[str, Any]], interval: str = "250ms"
) -> subprocess.Popen[str]:
    env = {**os.environ, "PULLTRACE_AGENT_TOKEN": "agent-secret", "PULLTRACE_LOG_LEVEL": "info"}
    env["PULLTRACE_REPORT_INTERVAL"] = interval
    command = ["agent", "--server", sink.url, "--node", "e2e-1", "--containerd", address]
    command += ["--health-listen", "127.0.0.1:0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pulltrace.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            logs.append(json.loads(line))  # every line is JSON: anything else fails here

    threading.Thread(target=read, daemon=True).start()
    return proc


def reported(sink: ReportSink, image: PushedImage, phase: str) -> dict[str, Any] | None:
    for report in reversed(sink.snapshot()):
        for pull in report["pulls"]:
            if pull["manifestDigest"] == image.manifest_digest and pull["phase"] == phase:
                return pull
    return None


def test_agent_reports_pulls_and_survives_a_containerd_restart(
    throttled_containerd: Containerd,
    throttle: ThrottleProxy,
    pusher: ImagePusher,
    sink: ReportSink,
) -> None:
    agent_logs: list[dict[str, Any]] = []
    daemon = throttled_containerd
    agent = start_agent(sink, daemon.address, agent_logs)
    try:
        first = pusher.image(2, MiB)
        start_cri_pull(daemon.address, first.ref_at(throttle.host_port)).wait(60)
        pull = wait_for(lambda: reported(sink, first, "completed"), 20, "a completed report")
        assert pull["repository"] == f"127.0.0.1/{first.repo}"
        assert pull["totalBytes"] == sum(first.layer_sizes)
        assert wait_for(lambda: reported(sink, first, "pulling"), 1, "a pulling report")

        daemon.stop()
        wait_for(
            lambda: any(e["level"] == "warning" and daemon.address in e["msg"] for e in agent_logs),
            10,
            "the agent to log that containerd is gone",
        )
        sent = len(sink.snapshot())
        wait_for(lambda: len(sink.snapshot()) > sent, 10, "heartbeats while containerd is down")
        daemon.start()
        second = pusher.image(1, MiB)
        start_cri_pull(daemon.address, second.ref_at(throttle.host_port)).wait(60)
        wait_for(lambda: reported(sink, second, "completed"), 20, "a report after the restart")
        assert agent.poll() is None
    finally:
        terminate_group(agent)
    assert agent.returncode == 0
    report = sink.snapshot()[-1]
    assert report["nodeName"] == "e2e-1" and report["intervalSeconds"] == 0.25
    assert {h["Authorization"] for h in sink.headers_seen} == {"Bearer agent-secret"}
    assert agent_logs[-1]["msg"] == "agent stopped"


async def test_containerd_source_streams_snapshots_of_a_real_pull(
    containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    from pulltrace.client.containerd import ContainerdSource
    from pulltrace.client.source import ConnectionState, Snapshot

    image = pusher.image(2, 2 * MiB)
    phases: list[str] = []
    stream = aiter(ContainerdSource(containerd.address, interval=0.2))
    try:
        first = await anext(stream)
        assert first == ConnectionState("live", containerd.address)
        pull = start_cri_pull(containerd.address, image.ref_at(throttle.host_port))
        deadline = time.monotonic() + 60
        while not {"completed", "failed"} & set(phases):
            assert time.monotonic() < deadline, f"no completed pull in 60 s; saw {phases}"
            if pull.done():
                pull.wait(0)  # re-raises a failed pull at once
            message = await asyncio.wait_for(anext(stream), 30)
            assert isinstance(message, Snapshot)
            phases += [p.phase for p in message.pulls if p.manifest_digest == image.manifest_digest]
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    pull.wait(30)
    assert "pulling" in phases and "failed" not in phases
