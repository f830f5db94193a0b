"""Proves the end-to-end infrastructure is real, and pins the containerd behaviour it relies on.

Each test is a few seconds: small layers, a 2 MiB/s throttle, and polling with deadlines.
"""

from __future__ import annotations

import time

import grpc
import httpx
import pytest

from testkit.containerd import Containerd
from testkit.cri import cri_image_status, cri_pull, start_cri_pull, start_ctr_pull
from testkit.images import OCI_INDEX, OCI_MANIFEST, ImagePusher, make_layer, sha256_digest
from testkit.proxy import ThrottleProxy
from testkit.registry import Registry
from testkit.util import MiB, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.containerd_matrix]

# containerd drops the port: every registry on 127.0.0.1 shares this label key.
SOURCE_LABEL = "containerd.io/distribution.source.127.0.0.1"


def layer_refs(digests: list[str]) -> set[str]:
    """The ingest refs containerd's fetcher gives layer downloads (remotes.MakeRefKey)."""
    return {f"layer-{d}" for d in digests}


def test_registry_serves_pushed_image_and_index(registry: Registry, pusher: ImagePusher) -> None:
    assert make_layer(4096, 7) == make_layer(4096, 7)
    assert abs(len(make_layer(MiB, 8)) - MiB) < 4096  # random payload: gzip cannot shrink it

    image = pusher.image(2, 64 * 1024)
    got = httpx.get(
        f"{registry.url}/v2/{image.repo}/manifests/{image.tag}",
        headers={"Accept": OCI_MANIFEST},
    )
    assert got.status_code == 200
    assert sha256_digest(got.content) == image.manifest_digest
    assert [layer["digest"] for layer in got.json()["layers"]] == image.layer_digests

    index = pusher.index(amd64_layers=1, arm64_layers=1, size=64 * 1024)
    got = httpx.get(
        f"{registry.url}/v2/{index.repo}/manifests/{index.tag}", headers={"Accept": OCI_INDEX}
    )
    assert got.status_code == 200
    assert sha256_digest(got.content) == index.index_digest
    platforms = {m["platform"]["architecture"]: m["digest"] for m in got.json()["manifests"]}
    assert platforms == {
        "amd64": index.manifests["linux/amd64"].manifest_digest,
        "arm64": index.manifests["linux/arm64"].manifest_digest,
    }


def test_cri_pull_through_throttle_is_observable(
    containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    image = pusher.image(3, 3 * MiB // 2)
    ref = image.ref_at(throttle.host_port)
    wanted = layer_refs(image.layer_digests)
    pull = start_cri_pull(containerd.address, ref, timeout=60)

    # (b) all three layers download at once (max_concurrent_downloads = 3)
    active = wait_for(
        lambda: wanted <= containerd.active_ingests().keys(), 10, "three layer ingests"
    )
    assert active
    throttle.set_rate(0)  # hold the pull so the next checks are surely mid-pull
    assert not pull.done()

    # (c) the manifest is committed, with its labels, before any layer is
    listing = containerd.ctr("content", "ls")
    print(f"\n--- ctr content ls while layers download ---\n{listing}")
    content = containerd.content_labels()
    labels = content[image.manifest_digest]
    for i, digest in enumerate(image.layer_digests):
        assert labels[f"containerd.io/gc.ref.content.l.{i}"] == digest
    assert labels["containerd.io/gc.ref.content.config"] == image.config_digest
    assert labels[SOURCE_LABEL] == image.repo
    assert image.config_digest in content
    assert not set(image.layer_digests) & content.keys()

    # the proxy's aggregate rate is the configured one, measured over 2 MiB (~1 s at 2 MiB/s)
    configured = 2 * MiB
    throttle.set_rate(configured)
    start_bytes, started = throttle.bytes_forwarded, time.monotonic()
    wait_for(lambda: throttle.bytes_forwarded >= start_bytes + 2 * MiB, 10, "2 MiB", interval=0.005)
    rate = 2 * MiB / (time.monotonic() - started)
    assert 0.85 * configured < rate < 1.15 * configured

    # (a) the pull succeeds and the image is listed
    assert pull.wait(30) == image.config_digest
    assert ref in containerd.image_names()
    assert image.digest_ref_at(throttle.host_port) in containerd.image_names()
    wait_for(lambda: not containerd.active_ingests(), 10, "no ingests left")
    assert set(image.layer_digests) <= containerd.content_labels().keys()
    status = cri_image_status(containerd.address, ref)
    assert status is not None and status.id == image.config_digest


def test_ctr_pull_through_throttle(
    containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    image = pusher.image(2, MiB)
    ref = image.ref_at(throttle.host_port)
    pull = start_ctr_pull(containerd.address, ref)
    wait_for(
        lambda: layer_refs(image.layer_digests) & containerd.active_ingests().keys(),
        10,
        "a layer ingest from ctr",
    )
    pull.wait(30)
    assert ref in containerd.image_names()
    content = containerd.content_labels()
    for digest in image.layer_digests:
        assert content[digest][SOURCE_LABEL] == image.repo
        assert content[digest]["containerd.io/uncompressed"].startswith("sha256:")
    # unpacked: the top layer's snapshot exists (1.x's ctr says so; 2.x's pulls in the daemon)
    diff_ids = [content[d]["containerd.io/uncompressed"] for d in image.layer_digests]
    snapshots = containerd.ctr("snapshots", "--snapshotter", "native", "ls")
    assert chain_id(diff_ids) in snapshots


def chain_id(diff_ids: list[str]) -> str:
    """The snapshot key of a layer stack (OCI image spec: ChainID)."""
    chain = diff_ids[0]
    for diff in diff_ids[1:]:
        chain = sha256_digest(f"{chain} {diff}".encode())
    return chain


def test_layers_in_the_store_are_not_downloaded_again(
    containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    throttle.set_rate(None)
    shared = pusher.layers(1, MiB)
    first = pusher.image(shared + pusher.layers(1, MiB))
    cri_pull(containerd.address, first.ref_at(throttle.host_port))

    second = pusher.image(shared + pusher.layers(1, MiB // 2))
    before = throttle.bytes_forwarded
    cri_pull(containerd.address, second.ref_at(throttle.host_port))
    downloaded = throttle.bytes_forwarded - before  # new layer, manifest, config, HTTP headers
    assert second.layer_sizes[1] < downloaded < second.layer_sizes[1] + 64 * 1024


def test_killing_the_proxy_fails_the_pull_and_gc_drops_the_ingests(
    containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    image = pusher.image(2, 2 * MiB)
    ref = image.ref_at(throttle.host_port)
    wanted = layer_refs(image.layer_digests)
    pull = start_cri_pull(containerd.address, ref, timeout=60)
    wait_for(lambda: wanted <= containerd.active_ingests().keys(), 10, "layer ingests")

    throttle.kill()
    killed = time.monotonic()
    with pytest.raises(grpc.RpcError) as failed:
        pull.wait(10)
    assert time.monotonic() - killed < 5
    assert "connection reset by peer" in failed.value.details()
    wait_for(lambda: not wanted & containerd.active_ingests().keys(), 15, "GC to drop the ingests")
    assert ref not in containerd.image_names()


def test_restart_keeps_content_and_resumes_ingests(
    fresh_containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    daemon = fresh_containerd
    daemon.add_registry_host(throttle.host_port)
    done = pusher.image(1, MiB // 2)
    cri_pull(daemon.address, done.ref_at(throttle.host_port))

    image = pusher.image(1, 3 * MiB)
    ref = image.ref_at(throttle.host_port)
    (wanted,) = layer_refs(image.layer_digests)
    pull = start_cri_pull(daemon.address, ref, timeout=60)
    wait_for(lambda: daemon.active_ingests().get(wanted, "0B") != "0B", 10, "1 MiB on disk")

    # SIGKILL: CRI cannot release its lease, so the half-done ingest outlives the restart
    daemon.restart(kill=True)
    with pytest.raises(grpc.RpcError):
        pull.wait(10)
    assert wanted in daemon.active_ingests()
    assert done.ref_at(throttle.host_port) in daemon.image_names()

    throttle.set_rate(None)
    before = throttle.bytes_forwarded
    assert cri_pull(daemon.address, ref) == image.config_digest
    assert throttle.bytes_forwarded - before < image.total_size - MiB // 2  # resumed

    daemon.restart()
    assert cri_image_status(daemon.address, ref) is not None
    assert image.manifest_digest in daemon.content_labels()
