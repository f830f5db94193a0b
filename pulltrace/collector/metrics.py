"""Prometheus metrics on their own port. Labels are bounded (a report's outcome, a node state),
never a pull or pod, so a busy cluster cannot blow up the series count. The one exception is
``pulltrace_node_containerd_up{node}``: one series per node with an agent, which an alert on a
node whose containerd is down needs, and which goes when the collector forgets the node."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

from pulltrace.collector.asgi import send_error
from pulltrace.model import NodeState, NodeStatus, PullEvent

DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600)
ReportResult = Literal["accepted", "unauthorized", "too_large", "invalid", "rate_limited", "full"]


class Metrics:
    def __init__(self) -> None:
        # A registry per instance, not the process-wide default, so tests can run several.
        self.registry = CollectorRegistry()
        r = self.registry
        self.pulls_active = Gauge(
            "pulltrace_pulls_active", "Pulls resolving or pulling now", registry=r
        )
        self.pulls_total = Counter(
            "pulltrace_pulls", "Pulls seen since the collector started", registry=r
        )
        self.pull_duration = Histogram(
            "pulltrace_pull_duration_seconds",
            "Time from a pull's start to its completion",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.pull_bytes = Counter(
            "pulltrace_pull_bytes", "Bytes downloaded by pulls (cached layers excluded)", registry=r
        )
        self.pull_errors = Counter("pulltrace_pull_errors", "Pulls that failed", registry=r)
        self.reports = Counter(
            "pulltrace_agent_reports", "Agent reports received, by outcome", ["result"], registry=r
        )
        # Resolved once: a label lookup per report is measurable at thousands a second.
        self._report_results = {r: self.reports.labels(r) for r in get_args(ReportResult)}
        self.sse_clients = Gauge(
            "pulltrace_sse_clients_active", "Clients connected to the event stream", registry=r
        )
        self.agents_connected = Gauge(
            "pulltrace_agents_connected", "Nodes whose agent reported recently", registry=r
        )
        self._downloaded: dict[str, int] = {}

    def observe(
        self,
        *,
        active_pulls: Callable[[], int],
        sse_clients: Callable[[], int],
        agents: Callable[[], int],
        sse_resyncs: Callable[[], int],
        nodes: Callable[[], list[NodeStatus]],
    ) -> None:
        """Values read at scrape time, from the same event loop, so they are never behind."""
        self.pulls_active.set_function(active_pulls)
        self.sse_clients.set_function(sse_clients)
        self.agents_connected.set_function(agents)
        self.registry.register(
            _ReadCounter(
                "pulltrace_sse_resyncs",
                "Times a client fell too far behind and was sent a snapshot instead",
                sse_resyncs,
            )
        )
        self.registry.register(_NodeGauges(nodes))

    def on_event(self, event: PullEvent) -> None:
        """A store listener. Bytes are counted from each event's cumulative figure, so the
        coalescing of progress events loses nothing. A pull is counted at its first event,
        which is its end when it had finished before the collector first saw it."""
        pull = event.pull
        kind = event.type
        if kind == "pull.removed":
            self._downloaded.pop(pull.id, None)
            return
        before = self._downloaded.get(pull.id)
        if before is None:
            self.pulls_total.inc()
            before = self._downloaded[pull.id] = 0
        if pull.downloaded_bytes > before:
            self.pull_bytes.inc(pull.downloaded_bytes - before)
            self._downloaded[pull.id] = pull.downloaded_bytes
        if kind == "pull.failed":
            self.pull_errors.inc()
        elif kind == "pull.completed" and pull.started_at and pull.completed_at:
            seconds = pull.completed_at.timestamp() - pull.started_at.timestamp()
            self.pull_duration.observe(max(0.0, seconds))

    def report(self, result: ReportResult) -> None:
        self._report_results[result].inc()

    def asgi_app(self) -> ASGIApp:
        exposition = make_asgi_app(self.registry)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return
            if scope["path"] != "/metrics":
                await send_error(send, 404, f"no such endpoint: {scope['path']} (try /metrics)")
                return
            await exposition(scope, receive, send)

        return app


class _ReadCounter(Collector):
    """A counter kept elsewhere (the broker counts without knowing about metrics)."""

    def __init__(self, name: str, documentation: str, read: Callable[[], int]) -> None:
        self._name = name
        self._documentation = documentation
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._documentation, value=self._read())


class _NodeGauges(Collector):
    """Per node, whether its agent can read containerd (0 too when the agent is silent: then
    nobody can), and how many nodes are in each state."""

    def __init__(self, read: Callable[[], list[NodeStatus]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        nodes = self._read()
        up = GaugeMetricFamily(
            "pulltrace_node_containerd_up",
            "1 when the node's agent reports and can read containerd, else 0",
            labels=["node"],
        )
        counts: dict[NodeState, int] = dict.fromkeys(get_args(NodeState), 0)
        for node in nodes:
            up.add_metric([node.node_name], 1.0 if node.state == "ready" else 0.0)
            counts[node.state] += 1
        yield up
        states = GaugeMetricFamily(
            "pulltrace_nodes", "Nodes whose agent has reported, by state", labels=["state"]
        )
        for state, n in counts.items():
            states.add_metric([state], n)
        yield states
