"""Layers waiting for a download slot are ``queued``, not downloading at 0 B/s.

containerd 1.x opens a layer's ingest only once one of the pull's slots is free; 2.x (its
transfer service) opens every layer's ingest at once and hands out the node's slots as they
free up. Either way pulltrace must never show more layers downloading than there are slots,
and a layer that waited starts when its slot came free, not when its ingest was opened.
"""

from __future__ import annotations

import pytest

from pulltrace.render import layer_state
from testkit.containerd import Containerd
from testkit.cri import start_cri_pull
from testkit.images import ImagePusher
from testkit.proxy import ThrottleProxy
from testkit.util import MiB
from tests.e2e.poller import Poller

pytestmark = [pytest.mark.e2e, pytest.mark.containerd_matrix]

SLOTS = 3  # the test daemon's max_concurrent_downloads


def test_layers_beyond_the_download_slots_are_queued_and_start_when_a_slot_frees(
    containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    assert containerd.max_concurrent_downloads == SLOTS
    throttle.set_rate(6 * MiB)
    image = pusher.image(5, 3 * MiB)
    with Poller(containerd.address, proxy=throttle, interval=0.2) as poller:
        start_cri_pull(containerd.address, image.ref_at(throttle.host_port)).wait(60)
        final = poller.wait_pull(
            lambda p: p.manifest_digest == image.manifest_digest and p.phase == "completed",
            "the pull to complete",
            30,
        )
        timeline = [p for _, p in poller.timeline(image.manifest_digest)]

    queued_ever = {layer.digest for p in timeline for layer in p.layers if layer.queued}
    for pull in timeline:
        states = [layer_state(layer) for layer in pull.layers]
        assert states.count("pulling") <= SLOTS, states
        for layer in pull.layers:
            if layer.queued:
                assert layer.started_at is None
                assert layer.downloaded_bytes == 0 and layer.bytes_per_sec == 0
    if containerd.release.major >= 2:
        assert len(queued_ever) >= len(image.layer_digests) - SLOTS
        first_commit = min(layer.completed_at for layer in final.layers if layer.completed_at)
        for layer in final.layers:
            if layer.digest in queued_ever:
                assert layer.started_at is not None and layer.started_at >= first_commit
    else:
        assert not queued_ever, "containerd 1.x opens an ingest only once a slot is free"
    print(f"containerd {containerd.release.version}: {len(queued_ever)} layers queued")
