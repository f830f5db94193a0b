"""Pulls known only from kubelet Events and pod states: phase-level rows without bytes."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest

from pulltrace.kube.index import KubeIndex
from pulltrace.kube.pods import go_duration, parse_event, parse_pod
from pulltrace.model import PodRef, PullStatus
from testkit.kube.objects import (
    T0,
    already_present,
    at,
    backoff,
    err_image_pull,
    failed,
    image_pull_backoff,
    initializing_pod,
    kubelet_event,
    pending_pod,
    pulled,
    pulling,
    repeat,
    running_pod,
    sha,
)

NGINX = "docker.io/library/nginx"
WEB = pending_pod("web", "n1", "nginx:1.25")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def fresh() -> KubeIndex:
    """Event times are around T0: the history TTL counts from there, not from today."""
    return KubeIndex(clock=lambda: T0 + timedelta(minutes=1))


def ref(name: str, container: str = "app") -> PodRef:
    return PodRef(namespace="default", pod_name=name, container=container)


def only(index: KubeIndex) -> PullStatus:
    (row,) = index.kubelet_pulls()
    return row


def feed(index: KubeIndex, *events: dict[str, object]) -> None:
    for event in events:
        index.apply_event("ADDED", event)


def test_pulling_is_a_phase_level_pull_started_at_the_event() -> None:
    index = fresh()
    index.apply_pod("ADDED", WEB)
    assert index.apply_event("ADDED", pulling(WEB, at(5)))
    row = only(index)
    assert row.phase == "pulling"
    assert row.started_at == at(5) and row.completed_at is None
    assert (row.node_name, row.repository, row.image_ref) == ("n1", NGINX, f"{NGINX}:1.25")
    assert row.pods == [ref("web")]
    assert not row.total_known
    assert row.total_bytes == row.downloaded_bytes == 0 and row.layers == []
    assert row.id.startswith("k8s-")


def test_pulled_completes_the_same_pull() -> None:
    index = fresh()
    feed(index, pulling(WEB, at(5)))
    started = only(index)
    feed(index, pulled(WEB, at(9), seconds=3.2))
    row = only(index)
    assert row.id == started.id
    assert row.phase == "completed"
    assert (row.started_at, row.completed_at) == (at(5), at(9))
    assert row.error == ""


def test_failed_pull_carries_kubelets_message_whatever_the_event_order() -> None:
    events = [
        pulling(WEB, at(0)),
        failed(WEB, at(2)),
        err_image_pull(WEB, at(2)),
        backoff(WEB, at(3)),
        image_pull_backoff(WEB, at(3)),
    ]
    expected = events[1]["message"]
    assert isinstance(expected, str) and expected.startswith('Failed to pull image "nginx:1.25"')
    for order in itertools.permutations(events):
        index = fresh()
        feed(index, *order)
        row = only(index)
        assert row.phase == "failed"
        assert row.error == expected
        assert (row.started_at, row.completed_at) == (at(0), at(2))


def test_already_present_is_not_a_download() -> None:
    index = fresh()
    feed(index, already_present(WEB, at(0)))
    assert index.kubelet_pulls() == []


def test_retry_after_back_off_is_a_new_pull_that_supersedes_the_failed_one() -> None:
    index = fresh()
    first_pull, first_fail = pulling(WEB, at(0)), failed(WEB, at(2))
    feed(index, first_pull, first_fail, backoff(WEB, at(3)))
    failed_row = only(index)
    feed(index, repeat(first_pull, at(20)))
    retry = only(index)
    assert retry.phase == "pulling" and retry.started_at == at(20)
    assert retry.id != failed_row.id
    feed(index, pulled(WEB, at(25)))
    assert only(index).phase == "completed"


def test_a_relist_of_aggregated_events_rebuilds_the_latest_attempt() -> None:
    """After a relist, each Event object shows only its first and latest occurrence."""
    live = fresh()
    pull, fail, back = pulling(WEB, at(0)), failed(WEB, at(2)), backoff(WEB, at(3))
    feed(live, pull, fail, back, repeat(pull, at(20)), repeat(fail, at(22)))
    relisted = fresh()
    assert relisted.replace_events(
        map(parse_event, [repeat(back, at(23)), repeat(fail, at(22)), repeat(pull, at(20))])
    )
    assert only(relisted) == only(live)
    assert only(live).started_at == at(20) and only(live).phase == "failed"


def test_pulled_without_pulling_starts_at_the_reported_pull_time() -> None:
    index = fresh()
    feed(index, pulled(WEB, at(10), seconds=4))
    row = only(index)
    assert row.phase == "completed"
    assert (row.started_at, row.completed_at) == (at(6), at(10))


def test_pods_sharing_one_download_are_one_row() -> None:
    other = pending_pod("api", "n1", "nginx:1.25")
    index = fresh()
    feed(index, pulling(WEB, at(0)), pulling(other, at(1)), pulled(WEB, at(5)))
    feed(index, pulled(other, at(5), seconds=0.05, waited=4.5))
    row = only(index)
    assert row.phase == "completed"
    assert row.pods == [ref("api"), ref("web")]


def test_same_image_on_two_nodes_is_two_rows() -> None:
    elsewhere = pending_pod("web2", "n2", "nginx:1.25")
    index = fresh()
    feed(index, pulling(WEB, at(0)), pulling(elsewhere, at(0)))
    assert sorted(r.node_name for r in index.kubelet_pulls()) == ["n1", "n2"]
    assert len({r.id for r in index.kubelet_pulls()}) == 2


def test_waiting_pods_join_a_running_pull() -> None:
    index = fresh()
    index.replace_pods(None, map(parse_pod, [WEB, pending_pod("api", "n1", "nginx:1.25")]))
    feed(index, pulling(WEB, at(0)))
    assert only(index).pods == [ref("api"), ref("web")]


def test_init_container_pull() -> None:
    job = initializing_pod("job", "n1", "busybox:1.36", "nginx:1.25")
    index = fresh()
    index.apply_pod("ADDED", job)
    feed(index, pulling(job, at(0), container="init"))
    row = only(index)
    assert row.image_ref == "docker.io/library/busybox:1.36"
    assert row.pods == [ref("job", "init")]


def test_container_started_after_the_pull_completes_it_and_names_the_digest() -> None:
    digest = sha("nginx-1.25")
    index = fresh()
    index.apply_pod("ADDED", WEB)
    feed(index, pulling(WEB, at(0)))
    index.apply_pod(
        "MODIFIED", running_pod("web", "n1", "nginx:1.25", f"{NGINX}@{digest}", started=at(7))
    )
    row = only(index)
    assert row.phase == "completed" and row.completed_at == at(7)
    assert row.manifest_digest == digest


def test_container_that_ran_before_the_pull_began_proves_nothing() -> None:
    old = running_pod("old", "n1", "nginx:1.25", f"{NGINX}@{sha('x')}", started=at(-600))
    index = fresh()
    index.apply_pod("ADDED", old)
    feed(index, pulling(WEB, at(0)))
    assert only(index).phase == "pulling"


def test_pod_state_alone_shows_a_failed_pull_on_a_node_without_events() -> None:
    message = 'Back-off pulling image "nginx:1.25"'
    stuck = pending_pod("web", "n3", "nginx:1.25", reason="ImagePullBackOff", message=message)
    index = fresh()
    index.apply_pod("ADDED", stuck)
    row = only(index)
    assert (row.node_name, row.phase, row.error) == ("n3", "failed", message)
    assert row.pods == [ref("web")]
    index.apply_pod("DELETED", stuck)
    assert index.kubelet_pulls() == []


def test_pod_state_does_not_override_a_retry_in_progress() -> None:
    stuck = pending_pod("web", "n1", "nginx:1.25", reason="ImagePullBackOff")
    index = fresh()
    index.apply_pod("ADDED", stuck)
    feed(index, pulling(stuck, at(30)))
    assert only(index).phase == "pulling"


def test_history_is_kept_for_the_ttl_then_dropped() -> None:
    clock = Clock()
    index = KubeIndex(history_ttl=600, clock=clock)
    feed(index, pulling(WEB, at(0)), pulled(WEB, at(5)))
    other = pending_pod("slow", "n1", "redis:7")
    feed(index, pulling(other, at(0)))
    clock.now = at(5) + timedelta(seconds=599)
    assert len(index.kubelet_pulls()) == 2
    clock.now = at(5) + timedelta(seconds=601)
    (row,) = index.kubelet_pulls()
    assert row.phase == "pulling"
    # the same old events arriving again (a relist) do not bring the row back
    index.replace_events(map(parse_event, [pulling(WEB, at(0)), pulled(WEB, at(5))]))
    assert [r.image_ref for r in index.kubelet_pulls()] == ["docker.io/library/redis:7"]


def test_replayed_and_deleted_events_change_nothing() -> None:
    index = fresh()
    events = [pulling(WEB, at(0)), pulled(WEB, at(5))]
    assert index.replace_events(map(parse_event, events))
    before = index.kubelet_pulls()
    assert not index.replace_events(map(parse_event, events))
    assert not index.apply_event("DELETED", events[0])
    assert index.kubelet_pulls() == before


def test_returned_rows_are_the_callers_to_modify() -> None:
    index = fresh()
    feed(index, pulling(WEB, at(0)))
    row = only(index)
    row.phase = "stale"
    row.pods.clear()
    assert only(index).phase == "pulling" and only(index).pods == [ref("web")]


@pytest.mark.parametrize(
    "event",
    [
        kubelet_event(WEB, "BackOff", "Back-off restarting failed container app", at(0)),
        kubelet_event(WEB, "Failed", "Error: CrashLoopBackOff", at(0), warning=True),
        kubelet_event(WEB, "Scheduled", "Successfully assigned default/web to n1", at(0)),
        {**pulling(WEB, at(0)), "source": {"component": "default-scheduler"}},
        {
            **pulling(WEB, at(0)),
            "involvedObject": {"kind": "Node", "name": "n1", "uid": "n1", "fieldPath": ""},
        },
    ],
)
def test_other_events_are_ignored(event: dict[str, object]) -> None:
    index = fresh()
    assert not index.apply_event("ADDED", event)
    assert index.kubelet_pulls() == []


def test_event_without_source_host_uses_the_pods_node() -> None:
    event = pulling(WEB, at(0))
    event["source"] = {"component": "kubelet"}
    event.pop("reportingInstance")
    index = fresh()
    index.apply_pod("ADDED", WEB)
    feed(index, event)
    assert only(index).node_name == "n1"


def test_combined_events_prefix_is_understood() -> None:
    event = pulling(WEB, at(0))
    event["message"] = "(combined from similar events): " + str(event["message"])
    index = fresh()
    feed(index, event)
    assert only(index).phase == "pulling"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3.2s", 3.2), ("350ms", 0.35), ("1m2.5s", 62.5), ("1h0m0s", 3600.0), ("12µs", 12e-6)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert go_duration(text) == pytest.approx(seconds)


def test_malformed_duration_is_unknown() -> None:
    assert go_duration("3.2 s") is None
