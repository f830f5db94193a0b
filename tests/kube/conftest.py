"""An API server double per test, and correlators started against it with the real client."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from pulltrace.kube.config import load_api_client
from pulltrace.kube.correlator import KubeCorrelator
from pulltrace.kube.watch import Backoff
from testkit.kube.apiserver import ApiServer
from testkit.kube.objects import T0

T = TypeVar("T")
WAIT = 15.0
"""An upper bound for things that happen in milliseconds; never a duration being tested."""


class Changes:
    """The correlator's listener: lets a test wait until a condition holds, re-checking it
    each time the correlator says its answers may have changed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.calls = 0
        self.threads: set[str] = set()

    def __call__(self) -> None:
        with self._cond:
            self.calls += 1
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()

    def wait_until(self, check: Callable[[], T], what: str, timeout: float = WAIT) -> T:
        result: list[T] = []

        def holds() -> bool:
            value = check()
            result[:] = [value]
            return bool(value)

        with self._cond:
            if not self._cond.wait_for(holds, timeout):
                raise TimeoutError(f"timed out waiting for {what}; last: {result[0]!r}")
        return result[0]


Start = Callable[..., tuple[KubeCorrelator, Changes]]


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


@pytest.fixture
def start(api: ApiServer, tmp_path: Path) -> Iterator[Start]:
    """Starts a correlator on the double's kubeconfig and waits for its initial lists. Its
    clock stands near the objects' T0, so the history TTL counts from there."""
    made: list[KubeCorrelator] = []

    def _start(namespaces: Sequence[str] = (), sync: bool = True) -> tuple[KubeCorrelator, Changes]:
        client = load_api_client(str(api.kubeconfig(tmp_path / "kubeconfig")))
        correlator = KubeCorrelator(
            client,
            list(namespaces),
            backoff=Backoff(initial=0.02, maximum=0.5),
            clock=lambda: T0 + timedelta(minutes=1),
        )
        changes = Changes()
        correlator.set_listener(changes)
        correlator.start()
        made.append(correlator)
        if sync:
            assert correlator.wait_synced(WAIT)
        return correlator, changes

    yield _start
    for correlator in made:
        correlator.close()
