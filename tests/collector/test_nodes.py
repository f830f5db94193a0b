"""Node health: the store's state machine driven with a clock that moves only when told to, and
what clients see of it over real sockets (``/api/v1/nodes``, node events, metrics)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import jsonschema
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pulltrace.collector.eventlog import log_node
from pulltrace.model import (
    REASON_MAX,
    AgentReport,
    NodeList,
    NodeStatus,
    PullStatus,
    StreamSnapshot,
    decode,
    encode,
)
from pulltrace.pullstore import NodeChange, PullStore
from tests.collector.conftest import Clock, Running, layer, pull, report
from tests.collector.test_api import sample
from tests.collector.test_events import Reader, events_url

SOCKET = "/run/containerd/containerd.sock"
REFUSED = "connection refused"
SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def down(node: str, pulls: list[PullStatus], reason: str = REFUSED, **kw: float) -> AgentReport:
    return msgspec.structs.replace(
        report(node, pulls, **kw),
        containerd_reachable=False,
        containerd_socket=SOCKET,
        containerd_error=reason,
    )


def up(node: str, pulls: list[PullStatus], **kw: float) -> AgentReport:
    return msgspec.structs.replace(report(node, pulls, **kw), containerd_socket=SOCKET)


class Nodes:
    """A store, its clock, and every node change it announced."""

    def __init__(self, ttl: float = 60.0) -> None:
        self.clock = Clock()
        self.store = PullStore(ttl, clock=self.clock, stale_check_interval=0.0)
        self.changes: list[NodeChange] = []
        self.store.add_node_listener(self.changes.append)
        self.at = 0.0

    def send(self, make: Callable[..., AgentReport], node: str, *pulls: PullStatus) -> None:
        self.clock.advance(1.0)
        self.at += 1.0
        self.store.apply_report(make(node, list(pulls), at=self.at))

    def tick(self, after: float) -> None:
        self.clock.advance(after)
        self.store.tick()

    def states(self) -> list[tuple[str, str | None, str]]:
        return [(c.kind, c.before, c.status.state) for c in self.changes]


def test_a_reporting_node_is_announced_ready_once_and_seen_each_time() -> None:
    n = Nodes()
    n.send(up, "node-a")
    first = n.store.nodes()[0].last_seen
    n.send(up, "node-a")
    assert n.states() == [("node.changed", None, "ready")]
    (node,) = n.store.nodes()
    assert node.node_name == "node-a" and node.containerd_reachable and node.error == ""
    assert node.containerd_socket == SOCKET and node.agent_version == "test"
    assert first is not None and node.last_seen is not None
    assert (node.last_seen - first).total_seconds() == 1.0


def test_containerd_unreachable_is_degraded_until_it_is_back() -> None:
    n = Nodes()
    n.send(up, "node-a")
    n.send(down, "node-a")
    n.send(down, "node-a")  # nothing new: no event
    n.send(lambda *a, **kw: down(*a, reason="no such socket", **kw), "node-a")
    n.send(up, "node-a")
    assert n.states() == [
        ("node.changed", None, "ready"),
        ("node.changed", "ready", "degraded"),
        ("node.changed", "degraded", "degraded"),
        ("node.changed", "degraded", "ready"),
    ]
    degraded = n.changes[1].status
    assert not degraded.containerd_reachable
    assert degraded.error == f"containerd unreachable at {SOCKET}: {REFUSED}"
    assert n.changes[2].status.error.endswith(": no such socket")
    assert n.changes[3].status.error == "" and n.store.connected_agents() == 1


def test_a_degraded_nodes_pulls_keep_their_phase_and_show_no_speed() -> None:
    n = Nodes()
    for done in (100, 300, 500):
        n.send(up, "node-a", pull("a1", layers=[layer(0, done=done)]))
    moving = n.store.get("a1")
    assert moving is not None and moving.bytes_per_sec > 0 and moving.eta_seconds
    # The agent's figures are frozen as they were; the collector's window would still say 200/s.
    frozen = pull("a1", layers=[layer(0, done=500)], bytes_per_sec=200.0, eta_seconds=2.5)
    n.send(down, "node-a", frozen)
    held = n.store.get("a1")
    assert held is not None and held.phase == "pulling" and held.downloaded_bytes == 500
    assert held.bytes_per_sec == 0 and held.eta_seconds is None
    assert all(x.bytes_per_sec == 0 for x in held.layers)
    # Back: the rate is measured afresh, not across the outage.
    n.send(up, "node-a", pull("a1", layers=[layer(0, done=900)]))
    n.send(up, "node-a", pull("a1", layers=[layer(0, done=950)]))
    back = n.store.get("a1")
    assert back is not None and back.bytes_per_sec == 50.0


def test_a_silent_node_goes_stale_and_is_ready_again_when_it_reports() -> None:
    n = Nodes()
    n.send(up, "node-a")
    n.tick(after=2.9)
    assert n.states() == [("node.changed", None, "ready")]
    n.tick(after=0.2)
    n.tick(after=5.0)
    assert n.states()[1:] == [("node.changed", "ready", "stale")]
    stale = n.changes[-1].status
    assert stale.error == "no report from its agent for 3 intervals (3s)"
    assert n.store.connected_agents() == 0
    n.send(up, "node-a")
    assert n.states()[2:] == [("node.changed", "stale", "ready")]


def test_a_node_silent_past_the_history_is_forgotten_and_clients_are_told() -> None:
    n = Nodes(ttl=10.0)
    n.send(down, "node-a")
    n.tick(after=4.0)
    n.tick(after=10.0)
    assert n.states() == [
        ("node.changed", None, "degraded"),
        ("node.changed", "degraded", "stale"),
        ("node.removed", "stale", "stale"),
    ]
    assert n.store.nodes() == []


def test_an_older_agent_that_says_nothing_of_containerd_is_ready() -> None:
    n = Nodes()
    old = b'{"nodeName": "node-a", "timestamp": "2026-01-01T00:00:00Z", "pulls": []}'
    n.store.apply_report(decode(old, AgentReport))
    (node,) = n.store.nodes()
    assert node.state == "ready" and node.containerd_socket == "" and node.agent_version == ""


def test_a_node_known_only_from_kubelet_has_no_status() -> None:
    from tests.collector.conftest import FakeCorrelator

    kubelet = PullStatus(id="k1", node_name="node-z", repository="r", phase="pulling")
    store = PullStore(correlator=FakeCorrelator(synced=True, kubelet=[kubelet]))
    store.tick()
    assert store.pulls() and store.nodes() == []


def test_the_degraded_reason_is_bounded_however_long_the_socket() -> None:
    n = Nodes()
    long_socket = "/" + "s" * 4000
    n.store.apply_report(
        msgspec.structs.replace(
            report("node-a", []), containerd_reachable=False, containerd_socket=long_socket
        )
    )
    (node,) = n.store.nodes()
    assert len(node.error) == REASON_MAX and node.error.startswith("containerd unreachable at /s")
    # What the collector sends, a client can read.
    assert decode(encode(NodeList(nodes=[node])), NodeList).nodes == [node]
    n.store.apply_report(msgspec.structs.replace(report("node-a", []), containerd_reachable=False))
    assert n.store.nodes()[0].error == "containerd unreachable at its socket: no reason given"


def test_transitions_are_logged_once_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    n = Nodes()
    n.store.add_node_listener(log_node)
    with caplog.at_level(logging.DEBUG, logger="pulltrace.collector.events"):
        n.send(up, "node-a")
        n.send(down, "node-a")
        n.send(down, "node-a", pull("a1"))
        n.send(lambda *a, **kw: down(*a, reason="deadline exceeded", **kw), "node-a")
        n.send(up, "node-a")
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("DEBUG", "node ready"),
        ("WARNING", f"node degraded: containerd unreachable at {SOCKET}: {REFUSED}"),
        ("DEBUG", "node degraded"),
        ("INFO", "node ready"),
    ]
    assert caplog.records[1].__dict__["nodeName"] == "node-a"


# -- what arbitrary agents can make the collector say ----------------------------------------

_decoder = msgspec.json.Decoder(AgentReport)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    socket=st.text(max_size=5000),
    error=st.text(max_size=1500),
    version=st.text(max_size=200),
    reachable=st.booleans(),
)
def test_any_report_the_ingest_accepts_gives_a_node_status_clients_accept(
    socket: str, error: str, version: str, reachable: bool
) -> None:
    wire = json.dumps(
        {
            "nodeName": "node-a",
            "timestamp": "2026-01-01T00:00:00Z",
            "agentVersion": version,
            "containerdReachable": reachable,
            "containerdSocket": socket,
            "containerdError": error,
        }
    ).encode()
    try:
        parsed = _decoder.decode(wire)
    except msgspec.ValidationError:
        assert len(socket) > 4096 or len(error) > REASON_MAX
        return
    store = PullStore()
    store.apply_report(parsed)
    listed = decode(encode(NodeList(nodes=store.nodes())), NodeList).nodes
    assert [n.state for n in listed] == ["ready" if reachable else "degraded"]


# -- over HTTP -------------------------------------------------------------------------------


@pytest.fixture
async def http(collector: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=collector.url, timeout=10) as client:
        yield client


async def test_nodes_endpoint_lists_agents_and_validates_against_its_schema(
    http: httpx.AsyncClient,
) -> None:
    assert (await http.get("/api/v1/nodes")).json() == {"schemaVersion": "v1", "nodes": []}
    assert (await http.post("/api/v1/report", content=encode(up("node-b", [])))).status_code == 204
    reply = await http.post("/api/v1/report", content=encode(down("node-a", [])))
    assert reply.status_code == 204
    doc = (await http.get("/api/v1/nodes")).json()
    jsonschema.validate(doc, json.loads((SCHEMAS / "node-list.v1.json").read_text()))
    assert [(n["nodeName"], n["state"]) for n in doc["nodes"]] == [
        ("node-a", "degraded"),
        ("node-b", "ready"),
    ]
    assert doc["nodes"][0]["error"] == f"containerd unreachable at {SOCKET}: {REFUSED}"
    assert doc["nodes"][0]["containerdReachable"] is False
    bad = await http.get("/api/v1/nodes", params={"state": "degraded"})
    assert bad.status_code == 400 and "no query parameters" in bad.json()["error"]


async def test_a_report_with_a_megabyte_error_is_refused_and_changes_nothing(
    http: httpx.AsyncClient,
) -> None:
    huge = down("node-a", [], reason="x" * 1_000_000)
    reply = await http.post("/api/v1/report", content=encode(huge))
    assert reply.status_code == 400, reply.text
    assert "containerdError" in reply.json()["error"]
    assert (await http.get("/api/v1/nodes")).json()["nodes"] == []


async def test_node_changes_reach_the_stream_and_the_snapshot_carries_the_nodes(
    collector: Running, http: httpx.AsyncClient
) -> None:
    url = events_url(collector)
    async with Reader(url) as reader:
        first = decode((await reader.next()).data, StreamSnapshot)
        assert first.nodes == [] and first.pulls == []
        await http.post("/api/v1/report", content=encode(up("node-a", [])))
        await http.post("/api/v1/report", content=encode(down("node-a", [])))
        seen = await reader.until(lambda sse: '"degraded"' in sse.data)
    changes = [(e.event, decode(e.data, NodeStatus).state) for e in seen]
    assert changes == [("node.changed", "ready"), ("node.changed", "degraded")]
    collector.service.broker.snapshot_max_age = 0  # a fresh snapshot, not the first and events
    async with Reader(url) as late:
        snapshot = decode((await late.next()).data, StreamSnapshot)
    assert [(n.node_name, n.state) for n in snapshot.nodes or []] == [("node-a", "degraded")]


async def test_containerd_up_per_node_in_metrics(
    collector: Running, http: httpx.AsyncClient
) -> None:
    await http.post("/api/v1/report", content=encode(up("node-a", [])))
    await http.post("/api/v1/report", content=encode(down("node-b", [])))
    async with httpx.AsyncClient() as scraper:
        text = (await scraper.get(collector.metrics_url)).text
    assert sample(text, 'pulltrace_node_containerd_up{node="node-a"}') == 1
    assert sample(text, 'pulltrace_node_containerd_up{node="node-b"}') == 0
    assert sample(text, 'pulltrace_nodes{state="ready"}') == 1
    assert sample(text, 'pulltrace_nodes{state="degraded"}') == 1
    assert sample(text, 'pulltrace_nodes{state="stale"}') == 0
