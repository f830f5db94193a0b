"""Paginated lists: the official client's ``limit``/``continue`` against the double's pages."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from pulltrace.kube.correlator import load_api_client
from pulltrace.kube.watch import Backoff, ListWatch
from testkit.kube.apiserver import ApiServer, RequestRecord
from testkit.kube.objects import pending_pod
from tests.kube.conftest import WAIT

pytestmark = pytest.mark.k8s


class Recorder:
    """A ListWatch's callbacks: what each list held and the watch events since."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.lists: list[list[str]] = []
        self.events: list[tuple[str, str]] = []

    def on_list(self, names: list[str]) -> bool:
        with self._cond:
            self.lists.append(names)
            self._cond.notify_all()
        return True

    def on_event(self, kind: str, obj: Mapping[str, Any]) -> bool:
        with self._cond:
            self.events.append((kind, obj["metadata"]["name"]))
            self._cond.notify_all()
        return True

    def wait_until(self, check: Any, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(check, WAIT):
                raise TimeoutError(f"timed out waiting for {what}: {self.lists} {self.events}")


@pytest.fixture
def pods(api: ApiServer, tmp_path: Path) -> Iterator[tuple[ListWatch[str], Recorder]]:
    """A pods ListWatch on pages of two, not yet started."""
    core = client.CoreV1Api(load_api_client(str(api.kubeconfig(tmp_path / "kubeconfig"))))
    recorder = Recorder()
    loop = ListWatch(
        "pods",
        core.list_pod_for_all_namespaces,
        (),
        lambda obj: str(obj["metadata"]["name"]),
        recorder.on_list,
        recorder.on_event,
        lambda: None,
        backoff=Backoff(initial=0.02, maximum=0.5),
        page_size=2,
    )
    yield loop, recorder
    loop.stop()


def names(n: int) -> list[str]:
    return [f"p{i}" for i in range(n)]


def test_a_list_follows_every_page_and_watches_from_the_first_pages_snapshot(
    api: ApiServer, pods: tuple[ListWatch[str], Recorder]
) -> None:
    loop, recorder = pods
    for name in names(5):
        api.add(pending_pod(name, "n1", "nginx:1.25"))
    snapshot = api.resource_version

    def between_pages(page: RequestRecord) -> None:
        # a pod created while the list is under way is not in it: the watch must bring it
        if not api.get("Pod", "default", "late"):
            api.add(pending_pod("late", "n1", "nginx:1.25"))

    api.before_page = between_pages
    loop.start()
    recorder.wait_until(lambda: recorder.events == [("ADDED", "late")], "the late pod")
    assert recorder.lists == [names(5)]
    pages = api.lists("pods")
    assert [(r.query["limit"], "continue" in r.query) for r in pages] == [
        ("2", False),
        ("2", True),
        ("2", True),
    ]
    assert api.watches("pods")[0].query["resourceVersion"] == str(snapshot)


def test_an_expired_continuation_starts_the_list_again(
    api: ApiServer, pods: tuple[ListWatch[str], Recorder]
) -> None:
    loop, recorder = pods
    for name in names(3):
        api.add(pending_pod(name, "n1", "nginx:1.25"))

    def compact_once(page: RequestRecord) -> None:
        if not api.get("Pod", "default", "new"):
            api.delete(api.get("Pod", "default", "p0") or {})
            api.add(pending_pod("new", "n1", "nginx:1.25"))
            api.compact()

    api.before_page = compact_once
    loop.start()
    assert loop.synced.wait(WAIT)
    # one list, of the cluster as it is after the compaction: nothing from the stale pages
    assert recorder.lists == [["new", "p1", "p2"]]
    fresh = [r for r in api.lists("pods") if "continue" not in r.query]
    assert len(fresh) == 2
    relisted = api.resource_version
    api.wait_for(lambda: api.watches("pods"), "the watch")
    assert api.watches("pods")[0].query["resourceVersion"] == str(relisted)
    api.add(pending_pod("after", "n1", "nginx:1.25"))
    recorder.wait_until(lambda: recorder.events == [("ADDED", "after")], "a live event")
