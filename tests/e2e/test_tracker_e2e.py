"""The tracker against a real containerd pulling from a real registry through a throttle.

These are the issue's acceptance tests for the mapping: ingests to named pulls, totals known
from the first sample, cached layers, speed against the proxy's true rate, failure, restart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from pulltrace.agent.containerd import ContainerdError, ContentClient
from pulltrace.model import PullStatus
from testkit.containerd import Containerd
from testkit.cri import cri_pull, start_cri_pull, start_ctr_pull
from testkit.images import ImagePusher, PushedImage
from testkit.proxy import ThrottleProxy
from testkit.util import MiB, wait_for
from tests.e2e.poller import Poller

pytestmark = [pytest.mark.e2e, pytest.mark.containerd_matrix]

HOST = "127.0.0.1"  # containerd drops the registry port from its distribution.source label


def repository(image: PushedImage) -> str:
    return f"{HOST}/{image.repo}"


def of(image: PushedImage, phase: str | None = None) -> Callable[[PullStatus], bool]:
    def check(pull: PullStatus) -> bool:
        return pull.manifest_digest == image.manifest_digest and phase in (None, pull.phase)

    return check


def completed(image: PushedImage) -> Callable[[PullStatus], bool]:
    return of(image, "completed")


def test_two_concurrent_images_are_two_pulls_with_totals_from_the_first_sample(
    containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    first = pusher.image(3, 3 * MiB // 2)
    second = pusher.image(2, 2 * MiB)
    with Poller(containerd.address, proxy=throttle) as poller:
        pulls = [
            start_cri_pull(containerd.address, image.ref_at(throttle.host_port))
            for image in (first, second)
        ]
        for image in (first, second):
            poller.wait_pull(completed(image), f"{image.repo} completed", 60)
        for pull in pulls:
            pull.wait(30)

        for image in (first, second):
            timeline = poller.timeline(image.manifest_digest)
            _, seen_first = timeline[0]
            assert seen_first.total_known
            assert seen_first.total_bytes == sum(image.layer_sizes)
            assert seen_first.layer_count == len(image.layer_digests)
            assert {p.id for _, p in timeline} == {seen_first.id}
            final = timeline[-1][1]
            assert final.repository == repository(image)
            assert final.image_ref == f"{repository(image)}@{image.manifest_digest}"
            assert final.downloaded_bytes == sum(image.layer_sizes)
            assert final.cached_bytes == 0
            assert final.percent == 100.0
            assert final.layers_done == len(image.layer_digests)
            assert sorted(layer.digest for layer in final.layers) == sorted(image.layer_digests)
            assert all(p.phase != "failed" for _, p in timeline)

        # both pulls were live in the same samples: concurrent, yet never merged
        both = [
            s
            for s in poller.history()
            if {p.manifest_digest for p in s.pulls if p.phase == "pulling"}
            >= {first.manifest_digest, second.manifest_digest}
        ]
        assert both, "the two pulls never overlapped"


def test_layers_already_in_the_store_are_cached(
    containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    shared = pusher.layers(2, MiB)
    base = pusher.image(shared)
    cri_pull(containerd.address, base.ref_at(throttle.host_port))

    image = pusher.image([*shared, *pusher.layers(1, 3 * MiB)])
    with Poller(containerd.address, proxy=throttle) as poller:
        start_cri_pull(containerd.address, image.ref_at(throttle.host_port)).wait(60)
        final = poller.wait_pull(completed(image), "the pull to complete", 30)
        _, first_seen = poller.timeline(image.manifest_digest)[0]

    for pull in (first_seen, final):
        assert pull.layers_cached == 2
        assert pull.cached_bytes == sum(image.layer_sizes[:2])
        assert pull.total_bytes == sum(image.layer_sizes)
    assert final.downloaded_bytes == image.layer_sizes[2]
    cached = {layer.digest for layer in final.layers if layer.cached}
    assert cached == set(image.layer_digests[:2])


def test_speed_tracks_the_throttle_within_ten_percent(
    containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    rate = 12 * MiB
    window = 5.0  # the tracker's default rate window
    throttle.set_rate(rate)
    image = pusher.image(10, 10 * MiB)
    with Poller(containerd.address, proxy=throttle, interval=0.5) as poller:
        start_cri_pull(containerd.address, image.ref_at(throttle.host_port)).wait(60)
        poller.wait_pull(completed(image), "the pull to complete", 30)
        history = poller.history()

    pulling = [
        (s, p)
        for s in history
        for p in s.pulls
        if p.manifest_digest == image.manifest_digest and p.phase == "pulling"
    ]
    assert pulling
    assert all(p.bytes_per_sec > 0 for _, p in pulling), "speed read 0 mid-pull"
    start = pulling[0][0].mono
    # steady state: the window is full and the pull goes on for another second at least
    end = pulling[-1][0].mono
    steady = [(s, p) for s, p in pulling if start + window + 0.5 <= s.mono <= end - 1.0]
    assert len(steady) >= 3, f"only {len(steady)} steady samples"
    for sample, pull in steady:
        earlier = min(history, key=lambda h: abs(h.mono - (sample.mono - window)))
        true_rate = (sample.proxy_bytes - earlier.proxy_bytes) / (sample.mono - earlier.mono)
        error = pull.bytes_per_sec / true_rate - 1
        print(
            f"shown {pull.bytes_per_sec / MiB:.2f} MiB/s, true {true_rate / MiB:.2f}: {error:+.1%}"
        )
        assert abs(error) <= 0.10


def test_a_pull_cut_off_midway_fails_with_a_reason(
    containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    image = pusher.image(2, 3 * MiB)
    with Poller(containerd.address, proxy=throttle) as poller:
        pull = start_cri_pull(containerd.address, image.ref_at(throttle.host_port))
        poller.wait_pull(lambda p: of(image)(p) and p.downloaded_bytes > 0, "bytes", 20)
        throttle.kill()
        failed = poller.wait_pull(of(image, "failed"), "the pull to fail", 20)
        with pytest.raises(grpc.RpcError):
            pull.wait(10)
        timeline = poller.timeline(image.manifest_digest)
    assert "aborted at" in failed.error
    assert failed.eta_seconds is None
    assert failed.completed_at is not None
    assert all(p.phase != "completed" for _, p in timeline)


def test_poller_recovers_when_containerd_restarts(
    throttled_containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    daemon = throttled_containerd
    with Poller(daemon.address, interval=0.1) as poller:
        wait_for(lambda: poller.history(), 10, "a first sample")
        daemon.stop()
        wait_for(lambda: poller.errors, 10, "the poller to notice containerd is gone")
        error = poller.errors[-1]
        assert "\n" not in error and daemon.address in error
        daemon.start()
        image = pusher.image(2, MiB)
        start_cri_pull(daemon.address, image.ref_at(throttle.host_port)).wait(60)
        final = poller.wait_pull(completed(image), "a pull after the restart", 30)
    assert final.repository == repository(image)


def test_multi_platform_index_names_the_index_and_tracks_the_platform_manifest(
    containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    index = pusher.index(amd64_layers=2, arm64_layers=1, size=MiB)
    amd64 = index.manifests["linux/amd64"]
    with Poller(containerd.address, proxy=throttle) as poller:
        start_cri_pull(containerd.address, index.ref_at(throttle.host_port)).wait(60)
        final = poller.wait_pull(completed(amd64), "the amd64 manifest's pull", 30)
        everything = {p.manifest_digest for s in poller.history() for p in s.pulls}
    assert final.image_ref == f"{HOST}/{index.repo}@{index.index_digest}"
    assert final.total_bytes == sum(amd64.layer_sizes)
    assert index.manifests["linux/arm64"].manifest_digest not in everything
    assert index.index_digest not in everything  # the index is metadata, not a pull


def test_ctr_pulls_are_tracked_too(
    containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    image = pusher.image(2, 2 * MiB)
    with Poller(containerd.address, proxy=throttle) as poller:
        start_ctr_pull(containerd.address, image.ref_at(throttle.host_port)).wait(60)
        final = poller.wait_pull(completed(image), "ctr's pull", 30)
        _, first_seen = poller.timeline(image.manifest_digest)[0]
    assert first_seen.total_bytes == final.total_bytes == sum(image.layer_sizes)
    assert final.repository == repository(image)


def test_a_missing_socket_is_one_clear_error(tmp_path: Path) -> None:
    with (
        ContentClient(f"{tmp_path}/nope.sock", "k8s.io") as client,
        pytest.raises(ContainerdError) as err,
    ):
        client.check()
    assert "nope.sock" in str(err.value) and "\n" not in str(err.value)
