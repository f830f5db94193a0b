"""A node whose agent the collector turns away for its token shows as ``unauthorized``: in the
node list, the event stream, the metrics, ``ls``'s warnings and the TUI's header; bounded, and
never over a node whose agent is getting through. The real agent reporter, the real collector
on loopback, the clients as they run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from pulltrace.agent.daemon import AgentConfig, ContainerdState, Reporter
from pulltrace.client.collector import CollectorSource
from pulltrace.client.endpoint import Endpoint
from pulltrace.client.source import NodeUpdate, Snapshot
from pulltrace.client.store import ClientStore
from pulltrace.collector.asgi import REFUSED_MAX
from pulltrace.render import MONO
from pulltrace.tui.widgets.header import nodes_text
from tests.client.test_cluster_sources import pulltrace
from tests.client.test_collector import until
from tests.collector.conftest import FAST, Running, body, pull

TOKEN = "the-agent-token"
REFUSAL = "the collector refuses its agent's token: the bearer token is not valid"
UP = ContainerdState("/run/containerd/containerd.sock", 0.0, True)


@pytest.fixture
def collector(launch: Callable[..., Running]) -> Running:
    return launch(base=replace(FAST, agent_token=TOKEN))


def agent(collector: Running, node: str, token: str, interval: float = 1.0) -> Reporter:
    sockets = ("/run/containerd/containerd.sock",)
    config = AgentConfig(collector.url, node, sockets, "k8s.io", interval=interval, token=token)
    return Reporter(config)


def nodes(collector: Running) -> list[dict[str, Any]]:
    reply = httpx.get(f"{collector.url}/api/v1/nodes")
    assert reply.status_code == 200
    listed: list[dict[str, Any]] = reply.json()["nodes"]
    return listed


def claim(collector: Running, node: str, token: str = "wrong") -> int:
    headers = {"Authorization": f"Bearer {token}", "Pulltrace-Node": node}
    reply = httpx.post(f"{collector.url}/api/v1/report", content=body(node, []), headers=headers)
    return reply.status_code


def test_an_agent_with_a_wrong_token_shows_its_node_unauthorized(collector: Running) -> None:
    refused = agent(collector, "node-a", "wrong\n")
    assert not refused.offer([pull("a1")], 0.0, UP)
    assert refused.refusal.startswith("collector refused the agent's token (401)")
    [node] = nodes(collector)
    assert (node["nodeName"], node["state"], node["error"]) == ("node-a", "unauthorized", REFUSAL)
    assert node["lastSeen"]
    assert httpx.get(f"{collector.url}/api/v1/pulls").json()["pulls"] == []
    metrics = httpx.get(collector.metrics_url).text
    assert 'pulltrace_nodes{state="unauthorized"} 1.0' in metrics

    fixed = agent(collector, "node-a", TOKEN)
    assert fixed.offer([pull("a1")], 0.0, UP)
    assert [(n["nodeName"], n["state"]) for n in nodes(collector)] == [("node-a", "ready")]


def test_a_node_whose_agent_gets_through_is_not_shown_unauthorized(collector: Running) -> None:
    """Anyone can claim a node name; only the token vouches for it."""
    assert agent(collector, "node-a", TOKEN).offer([], 0.0, UP)
    assert claim(collector, "node-a") == 401
    assert [(n["nodeName"], n["state"]) for n in nodes(collector)] == [("node-a", "ready")]


def test_the_refused_names_are_bounded_least_recent_first(collector: Running) -> None:
    names = [f"node-{i:03d}" for i in range(REFUSED_MAX + 20)]
    with httpx.Client(base_url=collector.url) as client:
        for name in names:
            headers = {"Authorization": "Bearer wrong", "Pulltrace-Node": name}
            assert client.post("/api/v1/report", content=b"{}", headers=headers).status_code == 401
    assert [n["nodeName"] for n in nodes(collector)] == names[20:]
    assert claim(collector, names[0]) == 401  # refused again: the most recent now
    assert [n["nodeName"] for n in nodes(collector)] == [names[0], *names[21:]]


@pytest.mark.parametrize("name", ["", "Node-A", "node a", "node-a\x1b[2J", "-node", "n" * 254])
def test_a_claim_that_is_not_a_node_name_is_not_recorded(collector: Running, name: str) -> None:
    headers = {"Authorization": "Bearer wrong", "Pulltrace-Node": name}
    reply = httpx.post(f"{collector.url}/api/v1/report", content=b"{}", headers=headers)
    assert reply.status_code in (400, 401)  # httptools refuses a control character itself
    assert nodes(collector) == []


async def test_a_node_whose_token_stops_working_turns_unauthorized_on_the_stream(
    collector: Running,
) -> None:
    """Rather than stale: its agent is there, and says why it is not heard. The TUI's header
    counts it beside the degraded nodes."""
    store = ClientStore()
    stream = aiter(CollectorSource(Endpoint(collector.url), backoff=0.05))
    try:
        snapshot = await until(stream, Snapshot)
        assert isinstance(snapshot, Snapshot)
        store.apply(snapshot)
        good = agent(collector, "node-a", TOKEN, interval=0.1)
        assert await asyncio.to_thread(good.offer, [], 0.0, UP)
        ready = await until(stream, NodeUpdate)
        assert isinstance(ready, NodeUpdate)
        store.apply(ready)
        assert store.node_counts() == {"ready": 1, "degraded": 0, "stale": 0, "unauthorized": 0}
        rotated = agent(collector, "node-a", "rotated-away", interval=0.1)
        assert not await asyncio.to_thread(rotated.offer, [], 0.0, UP)
        states: list[str] = []
        while not states or states[-1] != "unauthorized":
            update = await until(stream, NodeUpdate)
            assert isinstance(update, NodeUpdate)
            store.apply(update)
            states.append(update.node.state)
        assert states in (["unauthorized"], ["stale", "unauthorized"])
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert store.node_counts() == {"ready": 0, "degraded": 0, "stale": 0, "unauthorized": 1}
    assert nodes_text(store.node_counts(), MONO).plain == "nodes 1 · 1 unauthorized  "


def test_ls_warns_of_an_unauthorized_node(collector: Running) -> None:
    assert claim(collector, "node-x") == 401
    out = pulltrace("ls", "--server", collector.url, "-A")
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [f"warning: node node-x: {REFUSAL}"]
