"""Issue 3 end to end: ``pulltrace agent`` reports a real CRI pull to a real ``pulltrace
collector`` process that watches the Kubernetes API double, and the result is read back the way
users read it: the event stream, the REST API and ``/metrics``, with both tokens in force.

Everything that crosses a process boundary is real: containerd pulls from the registry through
the throttle, the agent posts over HTTP, the collector lists and watches the double with the
official client. The double plays kubelet: a pending Pod, and the Pulling/Pulled/Failed Events
kubelet posts around ``PullImage``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import pytest

from pulltrace.kube.refs import normalize
from pulltrace.model import PodRef, PullEvent, PullList, PullStatus
from testkit.containerd import Containerd
from testkit.cri import start_cri_pull
from testkit.images import ImagePusher
from testkit.kube.apiserver import ApiServer
from testkit.kube.objects import err_image_pull, failed, pending_pod, pulled, pulling
from testkit.proxy import ThrottleProxy
from testkit.stack import (
    READ_TOKEN,
    EventRecorder,
    LoggedProcess,
    start_agent,
    start_collector,
)
from testkit.util import MiB, wait_for

pytestmark = pytest.mark.e2e

NODE = "e2e-node"
OTHER_NODE = "other-node"
"""A node with pods and kubelet Events but no agent."""
NAMESPACE = "shop"
KUBE_TOKEN = "kube-secret"
WAIT = 30.0
"""An upper bound for things that take a second or two; never a duration being tested."""
LIFECYCLE = ("pull.started", "pull.completed", "pull.failed", "pull.removed")


def now() -> datetime:
    """Kubelet stamps its Events with the node's wall clock, which the collector compares with
    containerd's timestamps; the builders' fixed T0 would not overlap the real pull."""
    return datetime.now(UTC)


def lifecycle(events: list[PullEvent]) -> list[str]:
    return [e.type for e in events if e.type in LIFECYCLE]


@pytest.fixture
def api() -> Iterator[ApiServer]:
    """With a bearer token, as a service account's API server would want."""
    with ApiServer(token=KUBE_TOKEN) as server:
        yield server


def test_agent_pull_reaches_the_collector_with_its_pod_and_kubelet_failures_show_without_agent(
    throttled_containerd: Containerd,
    throttle: ThrottleProxy,
    pusher: ImagePusher,
    api: ApiServer,
    tmp_path: Path,
) -> None:
    daemon = throttled_containerd
    image = pusher.image(2, 5 * MiB // 2)  # about 2.5 s through the 2 MiB/s throttle
    ref = image.ref_at(throttle.host_port)  # 127.0.0.1:<proxy port>/e2e/imgN:v1
    web = pending_pod("web", NODE, ref, namespace=NAMESPACE)
    api.add(web)

    collector = start_collector(api.kubeconfig(tmp_path / "kubeconfig"), tmp_path)
    agent: LoggedProcess | None = None
    events: EventRecorder | None = None
    codes: dict[str, int] = {}
    try:
        agent = start_agent(collector.url, NODE, daemon.address, home=tmp_path)

        def agent_connected() -> bool:
            assert agent is not None
            agent.check_alive()
            return collector.metric("pulltrace_agents_connected") == 1

        # The agent reports even with nothing to say, so this is its first accepted report:
        # from here on it sees the pull from its first ingest.
        wait_for(agent_connected, WAIT, "the agent's first report")
        events = EventRecorder(f"{collector.url}/api/v1/events", READ_TOKEN).start()

        # -- a pull on a node with an agent, for a pod waiting on it ----------------------------
        api.add(pulling(web, now()))  # kubelet posts Pulling, then calls PullImage
        cri = start_cri_pull(daemon.address, ref)
        cri.wait(60)
        api.add(pulled(web, now(), seconds=cri.elapsed, size=image.total_size))
        done = events.wait_event(
            lambda e: (
                e.type == "pull.completed"
                and e.node_name == NODE
                and e.pull.manifest_digest == image.manifest_digest
            ),
            "pull.completed for the image",
            WAIT,
        )

        # -- kubelet's own failure on a node without an agent ---------------------------------
        absent = f"{throttle.host_port}/e2e/absent:v1"
        checkout = pending_pod("checkout", OTHER_NODE, absent, namespace=NAMESPACE)
        api.add(checkout)
        api.add(pulling(checkout, now()))
        # Waiting for it before the failure puts the failure in a later collector tick than
        # everything kubelet's Pulled for "web" (an earlier Event on the same watch) caused, so
        # once pull.failed is recorded, every event about "web" is too.
        events.wait_event(
            lambda e: e.type == "pull.started" and e.node_name == OTHER_NODE,
            "pull.started on the node without an agent",
            WAIT,
        )
        failure = failed(checkout, now())
        message = failure["message"]
        api.add(failure)
        detail = message.split('": ', 1)[1]
        api.modify(
            pending_pod(
                "checkout",
                OTHER_NODE,
                absent,
                namespace=NAMESPACE,
                reason="ErrImagePull",
                message=detail,
            )
        )
        api.add(err_image_pull(checkout, now()))
        lost = events.wait_event(
            lambda e: e.type == "pull.failed" and e.node_name == OTHER_NODE,
            "pull.failed on the node without an agent",
            WAIT,
        )

        with collector.client() as client:
            got = client.get(f"/api/v1/pulls/{done.pull.id}")
            listed = client.get("/api/v1/pulls", params={"node": NODE})
            other = client.get("/api/v1/pulls", params={"node": OTHER_NODE})
            kept = client.get(f"/api/v1/pulls/{lost.pull.id}")
        anonymous = httpx.get(f"{collector.url}/api/v1/pulls", timeout=10.0)
        pulls_total = collector.metric("pulltrace_pulls_total")
        accepted = collector.metric("pulltrace_agent_reports_total", result="accepted")
        refused = collector.metric("pulltrace_agent_reports_total", result="unauthorized")
        # A gauge computed at scrape time from heartbeats every two intervals; under load one
        # may slip past a staleness check, so this waits rather than samples once.
        wait_for(
            lambda: collector.metric("pulltrace_agents_connected") == 1,
            WAIT,
            "pulltrace_agents_connected 1 at the end",
        )
        recorded = events.events()
    finally:
        if agent is not None:
            codes["agent"] = agent.stop()
        codes["collector"] = collector.stop()  # also ends the event stream
        if events is not None:
            events.close()
        # pytest shows this only when the test fails
        print(collector.process.tail(200))
        if agent is not None:
            print(agent.tail(100))

    # The agent's pull: one pull, started once and completed once, named after the pod's tagged
    # reference (the agent alone knows only "127.0.0.1/<repo>@<digest>") and carrying the pod.
    pull = done.pull
    mine = [
        e
        for e in recorded
        if e.node_name == NODE
        and (
            e.pull.id == pull.id
            or e.pull.manifest_digest == image.manifest_digest
            or e.pull.repository == pull.repository
        )
    ]
    assert lifecycle(mine) == ["pull.started", "pull.completed"], [
        (e.type, e.pull.id) for e in mine
    ]
    assert {e.pull.id for e in mine} == {pull.id}
    assert pull.image_ref == normalize(ref) == ref
    assert pull.repository == f"127.0.0.1/{image.repo}"
    assert PodRef(namespace=NAMESPACE, pod_name="web", container="app") in pull.pods
    assert pull.total_known
    assert pull.total_bytes == sum(image.layer_sizes)
    assert pull.percent == 100.0
    assert pull.error == ""

    assert got.status_code == 200, got.text
    served = msgspec.json.decode(got.content, type=PullStatus)
    assert served.id == pull.id and served.phase == "completed"
    assert served.image_ref == ref and served.pods == pull.pods
    sizes = dict(zip(image.layer_digests, image.layer_sizes, strict=True))
    assert {layer.digest: layer.total_bytes for layer in served.layers} == sizes
    assert all(layer.completed_at is not None and not layer.cached for layer in served.layers)
    assert listed.status_code == 200, listed.text
    on_node = msgspec.json.decode(listed.content, type=PullList).pulls
    assert [p.id for p in on_node if p.repository == pull.repository] == [pull.id]

    # The node without an agent: a phase-level pull from kubelet's Events alone.
    theirs = [e for e in recorded if e.node_name == OTHER_NODE]
    assert lifecycle(theirs) == ["pull.started", "pull.failed"]
    assert {e.pull.id for e in theirs} == {lost.pull.id}
    failure_status = lost.pull
    assert failure_status.phase == "failed"
    assert not failure_status.total_known
    assert failure_status.error == message
    assert failure_status.image_ref == normalize(absent)
    assert failure_status.repository == "127.0.0.1/e2e/absent"
    assert failure_status.pods == [
        PodRef(namespace=NAMESPACE, pod_name="checkout", container="app")
    ]
    assert failure_status.total_bytes == 0 and failure_status.layers == []
    assert kept.status_code == 200, kept.text
    served_failure = msgspec.json.decode(kept.content, type=PullStatus)
    assert (served_failure.phase, served_failure.error) == ("failed", message)
    assert not served_failure.total_known
    assert other.status_code == 200, other.text
    assert [p.id for p in msgspec.json.decode(other.content, type=PullList).pulls] == [
        failure_status.id
    ]

    # Tokens, metrics and a clean shutdown.
    assert anonymous.status_code == 401
    assert pulls_total is not None and pulls_total >= 2
    assert accepted is not None and accepted > 0
    assert refused == 0
    assert codes == {"agent": 0, "collector": 0}
