"""Many fast pulls watched by a fast poll: where a tracker that guesses shows false failures.

containerd removes a finished ingest and lists its committed blob in two steps, so a poll can
land between them. Each pull here is short and the poll is many times faster than the agent's,
to hit that window as often as a real node hits it in a day.
"""

from __future__ import annotations

import pytest

from testkit.containerd import Containerd
from testkit.cri import cri_pull
from testkit.images import ImagePusher
from testkit.proxy import ThrottleProxy
from testkit.util import MiB
from tests.e2e.poller import Poller

pytestmark = [pytest.mark.e2e, pytest.mark.containerd_matrix]

PULLS = 30
FAST_POLL = 0.02  # seconds; the agent's default is 1 s


def test_fast_sequential_pulls_all_complete_and_none_fails_on_the_way(
    containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    throttle.set_rate(16 * MiB)
    images = [pusher.image(3, 3 * MiB // 2) for _ in range(PULLS)]
    never_completed: list[str] = []
    with Poller(containerd.address, proxy=throttle, interval=FAST_POLL) as poller:
        for image in images:
            cri_pull(containerd.address, image.ref_at(throttle.host_port), timeout=60)
            try:
                poller.wait_pull(
                    lambda p, d=image.manifest_digest: (
                        p.manifest_digest == d and p.phase == "completed"
                    ),
                    f"{image.repo} completed",
                    10,
                )
            except TimeoutError:
                never_completed.append(image.repo)
        history = poller.history()

    failed = {
        p.manifest_digest: p.error
        for s in history
        for p in s.pulls
        if p.phase == "failed" and p.manifest_digest in {i.manifest_digest for i in images}
    }
    seen = {p.manifest_digest for s in history for p in s.pulls}
    print(
        f"containerd {containerd.release.version}: {len(failed)}/{PULLS} pulls shown failed, "
        f"{len(never_completed)} never completed, {len(history)} polls"
    )
    assert all(i.manifest_digest in seen for i in images), "some pulls were never seen"
    assert not failed, f"{len(failed)}/{PULLS} successful pulls shown failed: {failed}"
    assert not never_completed, f"never shown completed: {never_completed}"
