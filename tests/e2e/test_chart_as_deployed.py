"""Issue 8 end to end: the Helm chart rendered by the real helm, and its agent and collector run
as its manifests say (testkit/pod.py: image entrypoint, args, env from the rendered Secret
and the node name, hostPath mounts in a private mount namespace, the pod's uid, groups and
capabilities, a read-only root filesystem), on a node whose containerd keeps its socket where a
standard node does (``/run/containerd``) or where k3s does (``/run/k3s/containerd``).

The collector reaches the API server double through its in-cluster configuration only: HTTPS
with the mounted ``ca.crt`` and token, ``KUBERNETES_SERVICE_HOST``/``PORT`` as kubelet sets them.
The agent reaches the collector through the Service's DNS name (an ``/etc/hosts`` entry in its
namespace) and port. A pull through CRI must show on the collector's REST API as completed for
the node name kubelet would give; then containerd restarts, which deletes and recreates its
socket, and the next pull must show too: a chart that mounts the socket file instead of its
directory keeps the dead inode and fails there.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import pytest
import yaml

from pulltrace.model import PodRef, PullList, PullStatus
from testkit.containerd import Containerd
from testkit.cri import start_cri_pull
from testkit.dockerfile import ROLES
from testkit.images import ImagePusher, PushedImage
from testkit.kube.apiserver import ApiServer
from testkit.kube.objects import pending_pod, pulled, pulling
from testkit.kube.tls import TlsFront
from testkit.pod import (
    HARNESS_TOOLS,
    Cluster,
    Image,
    Manifests,
    Node,
    Pod,
    build_image,
    ensure_debian_tools,
    pod_ip,
    prune_images,
    service_forwards,
    start_pod,
)
from testkit.proxy import ThrottleProxy
from testkit.registry import Registry
from testkit.stack import Collector
from testkit.util import MiB, free_port, wait_for
from tests.chart.conftest import helm  # noqa: F401 (tests/chart's fixture)
from tests.chart.helm import CHART, NAMESPACE, Helm
from tests.conftest import require_e2e

pytestmark = [pytest.mark.e2e, pytest.mark.k8s]

KUBE_TOKEN = "service-account-token"
READ_TOKEN = "read-secret"
APP_NAMESPACE = "shop"
RATE = 4 * MiB
CRAWL = 16 * 1024
"""Bytes/s until the agent has seen a pull: the images' 1.5 MiB would take ~100 s, longer than
any wait here."""
WAIT = 15.0
"""What a healthy machine needs for things that take a second or two (``wait_for`` scales it
for loaded ones); never a duration being tested."""


PORT_VALUES = (
    "collector.containerPort",
    "collector.metricsContainerPort",
    "service.port",
    "service.metricsPort",
    "agent.healthPort",
)


@dataclass(frozen=True)
class Variant:
    node: str
    socket_dir: str
    """Where this kind of node's containerd keeps its socket."""
    values: dict[str, object] = field(default_factory=dict)
    """Beyond the ports: everything else is the chart's defaults, as ``helm install`` gives."""


STANDARD = Variant("node-a", "/run/containerd", {"auth.readToken": READ_TOKEN})
K3S = Variant("k3s-node", "/run/k3s/containerd")


@pytest.fixture(scope="module")
def images() -> dict[str, Image]:
    """Both images, built side by side, keyed by the repository values.yaml names."""
    require_e2e()
    ensure_debian_tools({**HARNESS_TOOLS, "/usr/bin/openssl": "openssl"})
    prune_images()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    with ThreadPoolExecutor(len(ROLES)) as pool:
        built = {values[r]["image"]["repository"]: pool.submit(build_image, r) for r in ROLES}
        return {repository: future.result() for repository, future in built.items()}


def now() -> datetime:
    return datetime.now(UTC)


def wait_healthy(pod: Pod) -> None:
    """Every probe of every container passes (kubelet would mark the pod ready and leave it
    running); a container that exits fails at once."""
    last: list[str] = []

    def healthy() -> bool:
        for c in pod.containers:
            c.process.check_alive()
        last[:] = [
            reason
            for c in pod.containers
            for kind in ("startupProbe", "readinessProbe", "livenessProbe")
            if (reason := c.probe(kind)) is not None
        ]
        return not last

    try:
        wait_for(healthy, WAIT, f"{pod.name}'s probes", interval=0.2)
    except TimeoutError as exc:
        tails = "\n".join(c.process.tail() for c in pod.containers)
        raise AssertionError(f"{exc}: {last}\n{tails}") from None


def rest(collector: Collector) -> httpx.Client:
    """The collector's REST API as a user reads it: with the read token when the chart set one
    (an empty bearer is not a header httpx sends)."""
    token = collector.read_token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=collector.url, headers=headers, timeout=10.0)


def agent_pulls(collector: Collector, node: str, image: PushedImage) -> list[PullStatus]:
    """The image's pulls on ``node`` that the agent reported: ``total_known`` is what it read
    in containerd, unlike a phase-level pull the collector makes from kubelet's Events alone
    (which would complete without any agent)."""
    collector.process.check_alive()
    with rest(collector) as client:
        got = client.get("/api/v1/pulls", params={"node": node})
    assert got.status_code == 200, got.text
    pulls = msgspec.json.decode(got.content, type=PullList).pulls
    return [p for p in pulls if p.manifest_digest == image.manifest_digest and p.total_known]


def pull_and_see(
    api: ApiServer,
    collector: Collector,
    daemon: Containerd,
    throttle: ThrottleProxy,
    image: PushedImage,
    node: str,
    pod_name: str,
) -> PullStatus:
    """Kubelet's part of starting a pod (the pending Pod, Pulling, PullImage, Pulled), with
    the download held to a crawl until the collector shows the agent's view of it in flight
    (however long the agent takes to reach containerd, it cannot miss the pull), then the pull
    as the collector's REST API serves it once completed."""
    ref = image.ref_at(throttle.host_port)
    pod = pending_pod(pod_name, node, ref, namespace=APP_NAMESPACE)
    api.add(pod)
    api.add(pulling(pod, now()))
    throttle.set_rate(CRAWL)
    cri = start_cri_pull(daemon.address, ref)
    try:
        wait_for(
            lambda: any(p.phase == "pulling" for p in agent_pulls(collector, node, image)),
            WAIT,
            f"{ref} in flight on {node}",
            interval=0.2,
        )
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: the agent did not report it") from None
    finally:
        throttle.set_rate(RATE)
    cri.wait(60)
    api.add(pulled(pod, now(), seconds=cri.elapsed, size=image.total_size))

    def completed() -> PullStatus | None:
        done = [p for p in agent_pulls(collector, node, image) if p.phase == "completed"]
        return next((p for p in done if p.pods), None)

    pull = wait_for(completed, WAIT, f"{ref} completed on {node}", interval=0.2)
    assert pull is not None and pull.node_name == node
    assert pull.total_bytes == sum(image.layer_sizes)
    with rest(collector) as client:
        got = client.get(f"/api/v1/pulls/{pull.id}")
    assert got.status_code == 200, got.text
    layers = msgspec.json.decode(got.content, type=PullStatus).layers
    assert sorted(layer.digest for layer in layers) == sorted(image.layer_digests)
    assert PodRef(namespace=APP_NAMESPACE, pod_name=pod_name, container="app") in pull.pods
    return pull


@pytest.mark.parametrize("variant", [STANDARD, K3S], ids=["containerd", "k3s"])
def test_chart_as_deployed_reports_pulls_across_a_containerd_restart(
    variant: Variant,
    helm: Helm,  # noqa: F811 (the fixture imported above)
    images: dict[str, Image],
    fresh_containerd: Containerd,
    registry: Registry,
    pusher: ImagePusher,
    tmp_path: Path,
) -> None:
    daemon = fresh_containerd
    # Ports the kernel picks, set through the chart's values: every pod shares this machine's
    # network, where 8080 may be taken. The Service's differ from the containers', as by
    # default, so the agent reaches the collector through the Service's port mapping.
    values: dict[str, object] = {key: free_port() for key in PORT_VALUES}
    values.update(variant.values)
    sets = [
        a for key, value in values.items() for a in ("--set-json", f"{key}={json.dumps(value)}")
    ]
    manifests = Manifests(NAMESPACE, helm.template(*sets).objects)
    node = Node(variant.node, tmp_path / "node")
    node.place(variant.socket_dir, daemon.dir)
    first, second = pusher.image(2, 3 * MiB // 4), pusher.image(2, 3 * MiB // 4)
    pods: list[Pod] = []
    codes: dict[str, int] = {}
    with (
        ThrottleProxy(registry.host_port, rate=RATE) as throttle,
        ApiServer(token=KUBE_TOKEN) as api,
        TlsFront(api.url.removeprefix("http://"), tmp_path) as front,
    ):
        daemon.add_registry_host(throttle.host_port)
        relays = [
            ThrottleProxy(f"{pod_ip()}:{target}", port=port, host=pod_ip()).start()
            for port, target in service_forwards(manifests)
        ]
        cluster = Cluster("127.0.0.1", front.port, front.ca, KUBE_TOKEN)
        try:
            for kind in ("Deployment", "DaemonSet"):
                pods.append(
                    start_pod(
                        manifests.only(kind),
                        manifests,
                        node=node,
                        cluster=cluster,
                        images=images,
                        workdir=tmp_path / "pods",
                    )
                )
            collector_pod, agent_pod = pods
            for pod in pods:
                wait_healthy(pod)
                for c in pod.containers:
                    c.verify()
            (container,) = collector_pod.containers
            secret = manifests.only("Secret")["metadata"]["name"]
            read_token = manifests.secret_value(secret, "read-token") or ""
            collector = Collector(
                container.process,
                container.url("http"),
                f"{container.url('metrics')}/metrics",
                read_token,
            )

            def agent_connected() -> bool:
                for c in agent_pod.containers:
                    c.process.check_alive()
                return collector.metric("pulltrace_agents_connected") == 1

            # Its first report: from here on the agent sees every pull from its first ingest.
            wait_for(agent_connected, WAIT, "the agent's first report", interval=0.2)

            pull_and_see(api, collector, daemon, throttle, first, node.name, "web")

            before = os.stat(daemon.address)
            daemon.restart()
            # The premise of the next step: a restart replaces the socket, not only the daemon
            # (the file system may give the new one the old inode number once nothing holds it).
            after = os.stat(daemon.address)
            assert (after.st_ino, after.st_ctime_ns) != (before.st_ino, before.st_ctime_ns)
            pull_and_see(api, collector, daemon, throttle, second, node.name, "api")
            for pod in pods:
                wait_healthy(pod)

            anonymous = httpx.get(f"{collector.url}/api/v1/pulls", timeout=10.0)
            assert anonymous.status_code == (401 if read_token else 200)
            # The collector listed and watched with the service account's token over TLS.
            assert api.lists("pods") and api.watches("pods")
        finally:
            for pod in reversed(pods):
                codes.update(pod.stop())
            for relay in relays:
                relay.close()
            for pod in pods:
                for c in pod.containers:
                    print(c.process.tail(100))  # pytest shows it when the test fails
    assert codes == {"agent": 0, "collector": 0}
