"""Commands against a cluster: the kubeconfig path to a collector through the API server's
service proxy (an HTTP double of it, forwarding to a real collector), the API-only fallback,
and ``wait``'s exit codes, all through the real ``kubernetes`` client and real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import jsonschema
import pytest

from pulltrace.client.connect import SourceArgs, resolve
from pulltrace.client.source import ConnectionState, Event, Snapshot
from pulltrace.client.store import Query
from pulltrace.commands.ls import list_pulls
from pulltrace.model import PodRef
from testkit.kube import objects
from testkit.kube.apiserver import ApiServer
from testkit.kube.service_proxy import ServiceProxy
from tests.collector.conftest import FAST, FakeCorrelator, Running, body, layer, pull, start

pytestmark = pytest.mark.k8s

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs/schemas/pull-list.v1.json").read_text()
)
SERVICE = ("pulltrace", "pulltrace-collector:http")
IMAGE = "registry.example.com:5000/shop/web:1.2"
REPO = "registry.example.com/shop/web"  # as the agent reports it: containerd drops the port


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer(token="kube-token") as server:
        yield server


@pytest.fixture
def kubeconfig(api: ApiServer, tmp_path: Path) -> Path:
    return api.kubeconfig(tmp_path / "kubeconfig", namespace="shop")


@pytest.fixture
def correlator() -> FakeCorrelator:
    pods = ([PodRef(namespace="shop", pod_name="web", container="app")], IMAGE)
    return FakeCorrelator(synced=True, pods={("node-a", REPO): pods})


@pytest.fixture
def collector(correlator: FakeCorrelator) -> Iterator[Running]:
    running = start(replace(FAST, listen=("127.0.0.1", 0)), correlator)
    yield running
    running.stop()


def post(collector: Running, progress: int, total: int = 1000, **kw: object) -> None:
    pulls = [pull("p1", node="node-a", repo=REPO, layers=[layer(0, total, progress)], **kw)]
    reply = httpx.post(f"{collector.url}/api/v1/report", content=body("node-a", pulls))
    reply.raise_for_status()


def pulltrace(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("PULLTRACE_", "KUBE", "GITHUB_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "pulltrace.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
    )


async def test_kubeconfig_reaches_the_collector_through_the_service_proxy(
    api: ApiServer, kubeconfig: Path, collector: Running
) -> None:
    ServiceProxy(api).expose(*SERVICE, collector.url)
    plan = await asyncio.to_thread(resolve, SourceArgs(kubeconfig=str(kubeconfig)))
    assert plan.kind == "proxy" and plan.notice == ""
    assert plan.source().description == "collector pulltrace/pulltrace-collector via double"
    await asyncio.to_thread(post, collector, 200)

    listed, warnings = await asyncio.to_thread(list_pulls, plan, Query(), 1.0)
    assert warnings == []
    assert [(p.id, p.image_ref, p.pods[0].pod_name) for p in listed] == [("p1", IMAGE, "web")]

    stream = aiter(plan.source())
    try:
        assert isinstance(await anext(stream), ConnectionState)
        snapshot = await anext(stream)
        assert isinstance(snapshot, Snapshot) and [p.id for p in snapshot.pulls] == ["p1"]
        await asyncio.to_thread(post, collector, 1000)  # completes: arrives through the proxy
        while True:
            message = await asyncio.wait_for(anext(stream), 10)
            if isinstance(message, Event) and message.event.type == "pull.completed":
                break
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert any(
        "/services/pulltrace-collector:http/proxy/api/v1/events" in r.path for r in api.requests
    )

    out = await asyncio.to_thread(pulltrace, "ls", "--kubeconfig", str(kubeconfig), "--json")
    assert out.returncode == 0, out.stderr
    jsonschema.validate(json.loads(out.stdout), SCHEMA)
    assert json.loads(out.stdout)["pulls"][0]["phase"] == "completed"


async def test_without_a_collector_the_api_alone_gives_phase_rows(
    api: ApiServer, kubeconfig: Path
) -> None:
    proxy = ServiceProxy(api)
    pod = objects.pending_pod("web", "node-b", IMAGE, namespace="shop")
    api.add(pod)
    api.add(objects.pulling(pod, objects.at(1)))

    plan = await asyncio.to_thread(resolve, SourceArgs(kubeconfig=str(kubeconfig)))
    assert plan.kind == "api"
    assert plan.notice.startswith("no collector service pulltrace/pulltrace-collector")
    (row,), _ = await asyncio.to_thread(list_pulls, plan, Query(), 1.0)
    assert (row.node_name, row.phase, row.total_known, row.image_ref) == (
        "node-b",
        "pulling",
        False,
        IMAGE,
    )

    proxy.expose(*SERVICE, None)
    plan = await asyncio.to_thread(resolve, SourceArgs(kubeconfig=str(kubeconfig)))
    assert plan.kind == "api" and "has no ready endpoints" in plan.notice

    out = await asyncio.to_thread(pulltrace, "ls", "--kubeconfig", str(kubeconfig))
    assert out.returncode == 0
    assert "byte progress, speed and ETA need the pulltrace collector" in out.stderr
    assert "shop/web:1.2" in out.stdout and "pulling" in out.stdout


def test_a_wrong_cluster_token_is_one_line(api: ApiServer, tmp_path: Path) -> None:
    config = api.kubeconfig(tmp_path / "kubeconfig")
    config.write_text(config.read_text().replace("kube-token", "wrong"))
    out = pulltrace("ls", "--kubeconfig", str(config))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"pulltrace: the Kubernetes API server at {api.url} refused your credentials (401)"
    ]


def test_wait_exit_codes_from_pod_states(api: ApiServer, kubeconfig: Path, tmp_path: Path) -> None:
    ServiceProxy(api)
    running = objects.running_pod(
        "ok", "node-a", "nginx:1.27", "docker.io/library/nginx@sha256:" + "a" * 64, namespace="shop"
    )
    api.add(running)
    out = pulltrace("wait", "--kubeconfig", str(kubeconfig), "ok", "--timeout", "20s")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "all images pulled" in out.stdout

    stuck = objects.pending_pod("slow", "node-a", IMAGE, namespace="shop")
    api.add(stuck)
    out = pulltrace("wait", "--kubeconfig", str(kubeconfig), "slow", "--timeout", "1s")
    assert out.returncode == 2
    assert f"still waiting for {IMAGE} on node-a" in out.stdout

    message = (
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{IMAGE}": not found'
    )
    broken = objects.pending_pod(
        "bad", "node-a", IMAGE, reason="ErrImagePull", message=message, namespace="shop"
    )
    broken["metadata"]["labels"] = {"app": "web"}
    api.add(broken)
    summary = tmp_path / "summary.md"
    out = pulltrace(
        "wait",
        "--kubeconfig",
        str(kubeconfig),
        "-l",
        "app=web",
        "--timeout",
        "20s",
        env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "::group::pulltrace wait: -l app=web in shop"
    assert "::endgroup::" in lines
    assert f"::error title=Image pull failed::{IMAGE} on node-a: {message}" in lines
    assert "\x1b" not in out.stdout
    assert (
        "| `registry.example.com:5000/shop/web:1.2` | node-a | shop/bad | failed:"
        in summary.read_text()
    )

    out = pulltrace("wait", "--kubeconfig", str(kubeconfig), "x", "-l", "app=web")
    assert out.returncode == 3 and out.stderr.count("\n") == 1


async def test_wait_on_a_collector_follows_the_pull_to_completion(collector: Running) -> None:
    await asyncio.to_thread(post, collector, 100)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pulltrace.cli",
        "wait",
        "--server",
        collector.url,
        "-n",
        "shop",
        "web",
        "--timeout",
        "30s",
        "--interval",
        "100ms",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PULLTRACE_", "GITHUB_"))},
    )
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 20)
    assert b"waiting for the images of web in shop" in first
    progress = await asyncio.wait_for(proc.stdout.readline(), 20)
    assert f"pulling {IMAGE} on node-a: 10%".encode() in progress
    await asyncio.to_thread(post, collector, 1000)
    code = await asyncio.wait_for(proc.wait(), 20)
    rest = (await proc.stdout.read()).decode()
    assert code == 0, rest
    assert f"pulled {IMAGE} on node-a" in rest and "all images pulled" in rest


def test_wait_on_a_collector_fails_and_times_out_with_the_reason(collector: Running) -> None:
    post(collector, 300)
    out = pulltrace("wait", "--server", collector.url, "-n", "shop", "web", "--timeout", "1s")
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"timed out: still waiting for {IMAGE} on node-a: pulling 30%" in out.stdout

    reason = "download of layer 0 was aborted at 300 of 1000 bytes"
    post(collector, 300, phase="failed", error=reason)
    out = pulltrace("wait", "--server", collector.url, "-n", "shop", "web", "--timeout", "20s")
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"FAILED {IMAGE} on node-a: {reason}" in out.stdout
