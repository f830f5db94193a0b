"""A registry that dies mid-pull: how soon is the pull shown ``failed``, on each containerd?

A failed download's ingest goes away: at once on 1.x; on 2.x with the pull's lease, which
on a busy node can wait for the next garbage collection (here it went within 0.3 s, even with
collection held back), and until then the node sees a copy that ended short of its blob. The
cluster sees kubelet's Failed and ErrImagePull Events, which the collector folds into the
node's pull.

Each test prints the delay from the proxy dying to ``failed`` (the closing note of issue 9
reports them); none asserts on it, since a busy machine moves it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from testkit.containerd import Containerd
from testkit.cri import BackgroundPull, start_cri_pull
from testkit.images import ImagePusher, PushedImage
from testkit.kube.apiserver import ApiServer
from testkit.kube.objects import err_image_pull, failed, pending_pod, pulling
from testkit.proxy import ThrottleProxy
from testkit.stack import (
    READ_TOKEN,
    EventRecorder,
    LoggedProcess,
    start_agent,
    start_collector,
)
from testkit.util import MiB, wait_for
from tests.e2e.poller import Poller

pytestmark = [pytest.mark.e2e, pytest.mark.containerd_matrix]

NODE = "e2e-node"
NAMESPACE = "shop"
KUBE_TOKEN = "kube-secret"
WAIT = 120.0
"""Bounds a wait that must end; longer than a 2.x garbage collection, shorter than a stall."""


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer(token=KUBE_TOKEN) as server:
        yield server


def cut_off_midway(throttle: ThrottleProxy, image: PushedImage, pull: BackgroundPull[str]) -> float:
    """Kills the proxy once a third of the image came through; returns when (monotonic)."""
    wait_for(
        lambda: pull.done() or throttle.bytes_forwarded > sum(image.layer_sizes) // 3,
        60,
        "a third of the image",
    )
    assert not pull.done(), pull.error
    throttle.kill()
    return time.monotonic()


def test_node_alone_shows_a_pull_cut_off_midway_failed_in_seconds(
    containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    """The agent's view, polling at its default 1 s interval, with nothing from the cluster."""
    image = pusher.image(5, 3 * MiB)
    with Poller(containerd.address, proxy=throttle, interval=1.0) as poller:
        pull = start_cri_pull(containerd.address, image.ref_at(throttle.host_port))
        killed = cut_off_midway(throttle, image, pull)
        with pytest.raises(grpc.RpcError):
            pull.wait(60)
        cri_failed = time.monotonic()
        shown = poller.wait_pull(
            lambda p: p.manifest_digest == image.manifest_digest and p.phase == "failed",
            "the pull to be shown failed",
            WAIT,
        )
        seen = time.monotonic()
        timeline = [p for _, p in poller.timeline(image.manifest_digest)]
    print(
        f"containerd {containerd.release.version}: node alone shows failed "
        f"{seen - killed:.1f}s after the registry died (PullImage failed after "
        f"{cri_failed - killed:.1f}s): {shown.error}"
    )
    assert "stalled" not in shown.error, "found by a stall timeout, not by what happened"
    assert shown.eta_seconds is None and shown.completed_at is not None
    assert all(p.phase != "completed" for p in timeline)


def test_with_a_collector_kubelets_failure_fails_the_nodes_pull_in_seconds(
    containerd: Containerd,
    throttle: ThrottleProxy,
    pusher: ImagePusher,
    api: ApiServer,
    tmp_path: Path,
) -> None:
    """The test plays kubelet: Pulling, PullImage, and on its error the Failed and ErrImagePull
    Events, as kubelet posts them the moment PullImage returns."""
    image = pusher.image(5, 3 * MiB)
    ref = image.ref_at(throttle.host_port)
    pod = pending_pod("web", NODE, ref, namespace=NAMESPACE)
    api.add(pod)
    collector = start_collector(api.kubeconfig(tmp_path / "kubeconfig"), tmp_path)
    agent: LoggedProcess | None = None
    events: EventRecorder | None = None
    try:
        agent = start_agent(collector.url, NODE, containerd.address, home=tmp_path, interval="1s")
        wait_for(
            lambda: collector.metric("pulltrace_agents_connected") == 1, 30, "the agent's report"
        )
        events = EventRecorder(f"{collector.url}/api/v1/events", READ_TOKEN).start()
        api.add(pulling(pod, datetime.now(UTC)))
        pull = start_cri_pull(containerd.address, ref)
        events.wait_event(
            lambda e: e.node_name == NODE and e.pull.manifest_digest == image.manifest_digest,
            "the agent's pull at the collector",
            30,
        )
        killed = cut_off_midway(throttle, image, pull)
        with pytest.raises(grpc.RpcError) as err:
            pull.wait(60)
        cri_failed = time.monotonic()
        detail = f"rpc error: code = Unknown desc = {err.value.details()}"  # type: ignore[attr-defined]
        api.add(failed(pod, datetime.now(UTC), detail=detail))
        api.modify(
            pending_pod(
                "web", NODE, ref, namespace=NAMESPACE, reason="ErrImagePull", message=detail
            )
        )
        api.add(err_image_pull(pod, datetime.now(UTC)))
        lost = events.wait_event(
            lambda e: (
                e.type == "pull.failed"
                and e.node_name == NODE
                and e.pull.manifest_digest == image.manifest_digest
            ),
            "pull.failed for the node's pull",
            WAIT,
        )
        seen = time.monotonic()
    finally:
        if agent is not None:
            agent.stop()
        collector.stop()
        if events is not None:
            events.close()
        print(collector.process.tail(60))
        if agent is not None:
            print(agent.tail(60))
    print(
        f"containerd {containerd.release.version}: with a collector, failed "
        f"{seen - killed:.1f}s after the registry died (PullImage failed after "
        f"{cri_failed - killed:.1f}s): {lost.pull.error}"
    )
    assert lost.pull.phase == "failed" and lost.pull.error
    assert lost.pull.total_known and lost.pull.layer_count == len(image.layer_digests)
