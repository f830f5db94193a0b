"""What the clients say of a node whose agent cannot read containerd: the stream's node updates,
``ls``'s warning on stderr (escaped: the text comes from the network), and ``wait``'s lines;
against a real collector on loopback, the commands run as processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace

import httpx
import jsonschema
import msgspec
import pytest

from pulltrace.client.collector import CollectorSource
from pulltrace.client.endpoint import Endpoint
from pulltrace.client.source import NodeUpdate, Snapshot
from pulltrace.client.store import ClientStore
from pulltrace.model import AgentReport, PullStatus, StreamSnapshot, decode, encode
from tests.client.test_cluster_sources import IMAGE, REPO, SCHEMA, pulltrace
from tests.client.test_collector import until
from tests.collector.conftest import FAST, FakeCorrelator, Running, layer, pull, report, start
from tests.hostile import EMPTY_LIST, FakeServer

SOCKET = "/run/containerd/containerd.sock"
HOSTILE = "\x1b[2J\x1b[31mboom\nwarning: node fake: all good\u202e" + "y" * 900


@pytest.fixture
def collector() -> Iterator[Running]:
    from pulltrace.model import PodRef

    pods = ([PodRef(namespace="shop", pod_name="web", container="app")], IMAGE)
    correlator = FakeCorrelator(synced=True, pods={("node-a", REPO): pods})
    running = start(replace(FAST, listen=("127.0.0.1", 0)), correlator)
    yield running
    running.stop()


def send(collector: Running, node: str, pulls: list[PullStatus], error: str = "") -> None:
    sent: AgentReport = msgspec.structs.replace(
        report(node, pulls),
        containerd_reachable=not error,
        containerd_socket=SOCKET,
        containerd_error=error,
    )
    reply = httpx.post(f"{collector.url}/api/v1/report", content=encode(sent))
    reply.raise_for_status()


def web_pull(progress: int) -> PullStatus:
    return pull("p1", node="node-a", repo=REPO, layers=[layer(0, 1000, progress)])


def test_ls_warns_once_per_degraded_node_escaped_and_keeps_its_json(collector: Running) -> None:
    send(collector, "node-a", [web_pull(300)])
    send(collector, "node-b", [], error=HOSTILE)
    out = pulltrace("ls", "--server", collector.url, "-A", "-o", "json")
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    jsonschema.validate(listing, SCHEMA)
    assert set(listing) == {"schemaVersion", "pulls"} and len(listing["pulls"]) == 1
    (line,) = out.stderr.splitlines()
    assert line.startswith(
        f"warning: node node-b: containerd unreachable at {SOCKET}: \\x1b[2J\\x1b[31mboom\\n"
    )
    assert "\x1b" not in line and "\u202e" not in line and "\\u202e" in line
    assert line.endswith("…") and len(line) < 400

    filtered = pulltrace("ls", "--server", collector.url, "-A", "--node", "node-a")
    assert filtered.returncode == 0 and filtered.stderr == ""
    send(collector, "node-b", [])
    healthy = pulltrace("ls", "--server", collector.url, "-A")
    assert healthy.returncode == 0 and healthy.stderr == ""


def test_wait_says_the_pulls_node_is_degraded(collector: Running) -> None:
    send(collector, "node-a", [web_pull(300)], error="connection refused")
    args = ("wait", "--server", collector.url, "-n", "shop", "web", "--timeout", "1s")
    out = pulltrace(*args, "--interval", "100ms")
    assert out.returncode == 2, out.stdout + out.stderr
    trouble = f"node degraded: containerd unreachable at {SOCKET}: connection refused"
    assert f"pulling {IMAGE} on node-a: 30% " in out.stdout
    assert f"300B/1.0K - ETA -; {trouble}" in out.stdout
    assert f"still waiting for {IMAGE} on node-a: pulling 30%; {trouble}" in out.stdout


async def test_the_stream_brings_node_updates_to_the_store(collector: Running) -> None:
    store = ClientStore()
    stream = aiter(CollectorSource(Endpoint(collector.url), backoff=0.05))
    try:
        snapshot = await until(stream, Snapshot)
        assert isinstance(snapshot, Snapshot) and snapshot.nodes == []
        store.apply(snapshot)
        assert store.node_counts() == {"ready": 0, "degraded": 0, "stale": 0, "unauthorized": 0}
        await asyncio.to_thread(send, collector, "node-a", [], "connection refused")
        update = await until(stream, NodeUpdate)
        assert isinstance(update, NodeUpdate) and not update.removed
        store.apply(update)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert store.node_counts() == {"ready": 0, "degraded": 1, "stale": 0, "unauthorized": 0}
    assert store.nodes is not None and store.nodes["node-a"].error.endswith("connection refused")


def test_a_collector_without_node_health_is_not_an_error() -> None:
    """An older collector: no ``/api/v1/nodes`` (404), and snapshots without ``nodes``."""
    with FakeServer({"/api/v1/pulls": EMPTY_LIST}) as older:  # every other path: 404
        snapshot = CollectorSource(Endpoint(older.url)).list_once()
    assert snapshot == Snapshot([], None)
    assert decode(b'{"schemaVersion": "v1", "pulls": []}', StreamSnapshot).nodes is None
    store = ClientStore()
    store.apply(Snapshot([]))
    assert store.node_counts() is None
