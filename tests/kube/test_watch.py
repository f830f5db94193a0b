"""The correlator over the real ``kubernetes`` client against the API server double."""

from __future__ import annotations

import logging
import threading

import pytest

from pulltrace.kube.correlator import KubeCorrelator
from pulltrace.model import PodRef
from testkit.kube.apiserver import ApiServer
from testkit.kube.objects import (
    at,
    failed,
    kubelet_event,
    pending_pod,
    pulled,
    pulling,
    running_pod,
    sha,
)
from tests.kube.conftest import WAIT, Start

pytestmark = pytest.mark.k8s

NGINX = "docker.io/library/nginx"


def ref(name: str, namespace: str = "default") -> PodRef:
    return PodRef(namespace=namespace, pod_name=name, container="app")


def pods_for(correlator: KubeCorrelator, node: str = "n1", repo: str = NGINX) -> list[PodRef]:
    return correlator.match(node, repo, "")[0]


def phases(correlator: KubeCorrelator) -> dict[str, str]:
    return {p.image_ref: p.phase for p in correlator.kubelet_pulls()}


def test_initial_list_then_live_updates_reach_match(api: ApiServer, start: Start) -> None:
    api.add(pending_pod("web", "n1", "nginx:1.25"))
    correlator, changes = start()
    assert correlator.synced
    assert correlator.match("n1", NGINX, "") == ([ref("web")], f"{NGINX}:1.25")

    api.add(pending_pod("api", "n1", "nginx:1.25"))
    changes.wait_until(lambda: pods_for(correlator) == [ref("api"), ref("web")], "new pod")

    api.modify(running_pod("web", "n1", "nginx:1.25", f"{NGINX}@{sha('n')}"))
    changes.wait_until(lambda: pods_for(correlator) == [ref("api")], "web running")

    api.delete(api.get("Pod", "default", "api") or {})
    changes.wait_until(lambda: pods_for(correlator) == [], "api deleted")


def test_listener_is_called_from_the_watch_threads(api: ApiServer, start: Start) -> None:
    correlator, changes = start()
    api.add(pending_pod("web", "n1", "nginx:1.25"))
    changes.wait_until(lambda: pods_for(correlator), "pod")
    assert threading.current_thread().name not in changes.threads
    assert all(name.startswith("pulltrace-pods") for name in changes.threads)


def test_kubelet_events_become_phase_level_pulls(api: ApiServer, start: Start) -> None:
    web = api.add(pending_pod("web", "n1", "nginx:1.25"))
    bad = api.add(pending_pod("bad", "n2", "ghcr.io/org/missing:v1"))
    correlator, changes = start()

    api.add(pulling(web, at(0)))
    api.add(pulling(bad, at(0)))
    changes.wait_until(lambda: len(correlator.kubelet_pulls()) == 2, "two pulls")
    api.add(pulled(web, at(4)))
    failure = api.add(failed(bad, at(2)))
    expected = {f"{NGINX}:1.25": "completed", "ghcr.io/org/missing:v1": "failed"}
    changes.wait_until(lambda: phases(correlator) == expected, "outcomes")

    by_ref = {p.image_ref: p for p in correlator.kubelet_pulls()}
    assert by_ref["ghcr.io/org/missing:v1"].error == failure["message"]
    assert by_ref["ghcr.io/org/missing:v1"].node_name == "n2"
    assert (by_ref[f"{NGINX}:1.25"].started_at, by_ref[f"{NGINX}:1.25"].completed_at) == (
        at(0),
        at(4),
    )


def test_events_are_filtered_to_kubelets_on_the_server(api: ApiServer, start: Start) -> None:
    start()
    api.wait_for(lambda: api.open_watches() == 2, "both watches")
    watches = api.watches("events")
    assert watches and all(
        w.query["fieldSelector"] == "involvedObject.kind=Pod,source=kubelet" for w in watches
    )
    assert all(w.query["allowWatchBookmarks"] == "true" for w in api.watches("pods"))


def test_relist_after_compaction_loses_nothing(api: ApiServer, start: Start) -> None:
    web = api.add(pending_pod("web", "n1", "nginx:1.25"))
    gone = api.add(pending_pod("gone", "n1", "nginx:1.25"))
    correlator, changes = start()
    api.add(pulling(web, at(0)))
    changes.wait_until(lambda: phases(correlator) == {f"{NGINX}:1.25": "pulling"}, "pulling")
    lists_before = len(api.lists("pods"))

    with api.outage():
        api.delete(gone)
        api.add(pending_pod("new", "n1", "nginx:1.25"))
        floor = api.compact()

    changes.wait_until(lambda: pods_for(correlator) == [ref("new"), ref("web")], "relisted pods")
    assert len(api.lists("pods")) == lists_before + 1
    expired = [w for w in api.watches("pods") if int(w.query["resourceVersion"]) < floor]
    assert expired, "the pods watch should have resumed from a compacted version"
    # the pull seen before the compaction is still there
    assert phases(correlator) == {f"{NGINX}:1.25": "pulling"}
    api.add(pulled(web, at(5)))
    changes.wait_until(lambda: phases(correlator) == {f"{NGINX}:1.25": "completed"}, "live again")


def test_dropped_watches_resume_from_the_last_version_without_relisting(
    api: ApiServer, start: Start
) -> None:
    correlator, changes = start()
    api.wait_for(lambda: api.open_watches() == 2, "both watches")
    api.add(pending_pod("web", "n1", "nginx:1.25"))
    changes.wait_until(lambda: pods_for(correlator), "pod")
    opened = api.watches_opened
    last = api.resource_version

    assert api.drop_watches() == 2
    api.add(pending_pod("api", "n1", "nginx:1.25"))
    changes.wait_until(lambda: len(pods_for(correlator)) == 2, "pod added while reconnecting")

    assert api.watches_opened > opened
    assert len(api.lists("pods")) == len(api.lists("events")) == 1
    resumed = api.watches("pods")[-1]
    assert int(resumed.query["resourceVersion"]) >= last


def test_bookmarks_keep_a_quiet_watch_resumable_after_compaction(
    api: ApiServer, start: Start
) -> None:
    start()
    api.wait_for(lambda: api.open_watches() == 2, "both watches")
    # Changes neither watch sees: a scheduler event (filtered out server-side).
    scheduler = kubelet_event(pending_pod("x", "n1", "nginx"), "Scheduled", "assigned", at(0))
    scheduler["source"] = {"component": "default-scheduler"}
    scheduler["reportingComponent"] = "default-scheduler"
    api.add(scheduler)
    api.bookmark()
    opened = api.watches_opened
    api.compact()
    api.drop_watches()
    api.wait_for(lambda: api.watches_opened >= opened + 2, "both watches back")
    assert len(api.lists("pods")) == len(api.lists("events")) == 1
    for resumed in (api.watches("pods")[-1], api.watches("events")[-1]):
        assert int(resumed.query["resourceVersion"]) == api.resource_version


def test_namespaces_filter(api: ApiServer, start: Start) -> None:
    a = api.add(pending_pod("a", "n1", "nginx:1.25", namespace="team-a"))
    b = api.add(pending_pod("b", "n1", "nginx:1.25", namespace="team-b"))
    api.add(pending_pod("c", "n1", "nginx:1.25", namespace="team-c"))
    correlator, changes = start(["team-a", "team-b"])
    assert pods_for(correlator) == [ref("a", "team-a"), ref("b", "team-b")]
    scoped = {r.path for r in api.requests}
    assert scoped == {
        f"/api/v1/namespaces/{ns}/{res}"
        for ns in ("team-a", "team-b")
        for res in ("pods", "events")
    }

    api.add(pending_pod("c2", "n1", "nginx:1.25", namespace="team-c"))
    api.add(pulling(b, at(0)))
    changes.wait_until(lambda: correlator.kubelet_pulls(), "team-b pull")
    assert pods_for(correlator) == [ref("a", "team-a"), ref("b", "team-b")]
    api.delete(a)
    changes.wait_until(lambda: pods_for(correlator) == [ref("b", "team-b")], "a deleted")


def test_close_ends_every_watch(api: ApiServer, start: Start) -> None:
    correlator, _ = start()
    api.wait_for(lambda: api.open_watches() == 2, "both watches")
    correlator.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("pulltrace-")]
    api.wait_for(lambda: api.open_watches() == 0, "the double to notice the hang-ups", WAIT)


def test_unreachable_server_is_retried_until_it_answers(
    api: ApiServer, start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pulltrace.kube")
    with api.outage():
        correlator, changes = start(sync=False)
        api.wait_for(lambda: len(api.lists("pods")) >= 3, "retried lists")
        assert not correlator.synced
        warnings = [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and r.getMessage().startswith("pods")
        ]
        assert len(warnings) == 1, "a repeated failure is one warning"
        assert warnings[0].startswith("pods (all namespaces): HTTP 503 Service Unavailable;")
        api.add(pending_pod("web", "n1", "nginx:1.25"))
    assert correlator.wait_synced(WAIT)
    changes.wait_until(lambda: pods_for(correlator) == [ref("web")], "pod after the outage")
