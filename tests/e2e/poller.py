"""Polls a real containerd through pulltrace's own client and tracker, recording every sample.

A background thread polls at a fixed rate, as the agent does, so tests can wait on what the
tracker saw (``wait_pull``) and then inspect the whole history, the first sample included.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pulltrace.agent.containerd import ContainerdError, ContentClient
from pulltrace.agent.tracker import Tracker
from pulltrace.model import PullStatus
from testkit.proxy import ThrottleProxy
from testkit.util import wait_for


@dataclass(frozen=True)
class Sample:
    mono: float
    pulls: list[PullStatus]
    proxy_bytes: int  # the throttle's forwarded bytes at the same instant: the true progress


@dataclass
class Poller:
    address: str
    interval: float = 0.25
    proxy: ThrottleProxy | None = None
    stall_timeout: float = 90.0
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = ContentClient(self.address, "k8s.io")
        self.tracker = Tracker(self.client, "e2e-node", stall_timeout=self.stall_timeout)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pulls = self.tracker.poll()
            except ContainerdError as err:
                with self._lock:
                    self.errors.append(str(err))
            else:
                proxy_bytes = self.proxy.bytes_forwarded if self.proxy else 0
                with self._lock:
                    self.samples.append(Sample(time.monotonic(), pulls, proxy_bytes))
            self._stop.wait(self.interval)

    def history(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)

    def latest(self) -> list[PullStatus]:
        history = self.history()
        return history[-1].pulls if history else []

    def wait_pull(
        self, check: Callable[[PullStatus], bool], what: str, timeout: float = 30.0
    ) -> PullStatus:
        def found() -> PullStatus | None:
            return next((p for p in self.latest() if check(p)), None)

        pull = wait_for(found, timeout, what)
        assert pull is not None
        return pull

    def timeline(self, manifest_digest: str) -> list[tuple[float, PullStatus]]:
        """Every sample of one image's pull, oldest first."""
        return [
            (s.mono, p)
            for s in self.history()
            for p in s.pulls
            if p.manifest_digest == manifest_digest
        ]
