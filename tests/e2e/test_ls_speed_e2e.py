"""``pulltrace ls --containerd`` as users run it, with its default 1 s sample: is the speed it
prints the speed the bytes really arrive at?

containerd moves an ingest's offset in 1 MiB steps, so two samples 1 s apart in wall time see
a whole number of steps; only containerd's own timestamps of those steps measure the rate.
The truth is the throttling proxy's byte count: one token bucket shared by every connection,
so all pulls together get exactly what it lets through. The speed pulltrace shows is the rate
over its rate window (the last 5 s, or since the pulls began if that is shorter), so that is
the window the proxy's count is taken over; on a busy machine the proxy's rate wanders by a
few percent from one second to the next, so a shorter window would measure the machine. The
listings start about a window into the pulls.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from bisect import bisect_left

import pytest

from testkit.containerd import Containerd
from testkit.cri import start_cri_pull
from testkit.images import ImagePusher
from testkit.proxy import ThrottleProxy
from testkit.util import MiB, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.containerd_matrix]

RATE = 6_000_000  # bytes/s for all pulls together
WINDOW = 5.0  # the tracker's default rate window
LISTINGS = 3


class ProxyMeter:
    """The proxy's forwarded bytes every 20 ms, so its true rate over any window is known."""

    def __init__(self, proxy: ThrottleProxy) -> None:
        self.proxy = proxy
        self.times: list[float] = []
        self.counts: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proxy-meter", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.times.append(time.monotonic())
            self.counts.append(self.proxy.bytes_forwarded)

    def __enter__(self) -> ProxyMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def first_over(self, count: int) -> float:
        return next(t for t, c in zip(self.times, self.counts, strict=True) if c > count)

    def rate(self, start: float, end: float) -> float:
        i, j = bisect_left(self.times, start), bisect_left(self.times, end) - 1
        return (self.counts[j] - self.counts[i]) / (self.times[j] - self.times[i])


def ls_speeds(address: str) -> dict[str, float]:
    """One ``ls --containerd --json`` with the default sample: speed of each pulling image."""
    out = subprocess.run(
        [sys.executable, "-m", "pulltrace.cli", "ls", "--containerd", address, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pulls = json.loads(out.stdout)["pulls"]
    return {p["manifestDigest"]: p["bytesPerSec"] for p in pulls if p["phase"] == "pulling"}


def test_ls_speed_of_two_pulls_sums_to_the_throttle_rate_within_five_percent(
    containerd: Containerd, throttle: ThrottleProxy, pusher: ImagePusher
) -> None:
    throttle.set_rate(RATE)
    # long enough that both are still pulling at the last listing, even where containerd 2.x
    # gives all its slots to the first pull
    images = [pusher.image(5, 14 * MiB) for _ in range(2)]
    digests = {image.manifest_digest for image in images}
    with ProxyMeter(throttle) as meter:
        pulls = [start_cri_pull(containerd.address, i.ref_at(throttle.host_port)) for i in images]
        # about a rate window in, where the speed shown is a whole window's
        steady = int(0.8 * WINDOW * RATE)
        wait_for(lambda: throttle.bytes_forwarded > steady, 60, "the pulls to run a while")
        began = meter.first_over(64 * 1024)  # manifests and configs are smaller: layers began
        errors = []
        for _ in range(LISTINGS):
            speeds = ls_speeds(containerd.address)
            end = time.monotonic()
            assert set(speeds) == digests, f"both pulls should be pulling: {speeds}"
            true_rate = meter.rate(max(began, end - WINDOW), end)
            shown = sum(speeds.values())
            errors.append(shown / true_rate - 1)
            print(
                f"containerd {containerd.release.version}: ls shows {shown / MiB:.2f} MiB/s "
                f"({', '.join(f'{s / MiB:.2f}' for s in speeds.values())}), true "
                f"{true_rate / MiB:.2f} MiB/s: {errors[-1]:+.1%} (over the last second: "
                f"{shown / meter.rate(end - 1.0, end) - 1:+.1%})"
            )
        for pull in pulls:
            pull.wait(120)
    assert all(abs(e) <= 0.05 for e in errors), [f"{e:+.1%}" for e in errors]
