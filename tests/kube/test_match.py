"""Which pods wait for an image the agent sees pulling on a node."""

from __future__ import annotations

from pulltrace.kube.index import KubeIndex
from pulltrace.kube.pods import parse_pod
from pulltrace.model import PodRef
from testkit.kube.objects import (
    C,
    at,
    initializing_pod,
    pending_pod,
    pod,
    pulling,
    running,
    running_pod,
    sha,
    terminated,
    waiting,
)

NGINX = "docker.io/library/nginx"


def ref(name: str, container: str = "app", namespace: str = "default") -> PodRef:
    return PodRef(namespace=namespace, pod_name=name, container=container)


def index_with(*pods: dict[str, object]) -> KubeIndex:
    index = KubeIndex()
    index.replace_pods(None, map(parse_pod, pods))
    return index


def test_pending_pod_on_the_node_matches_with_its_full_reference() -> None:
    index = index_with(pending_pod("web", "n1", "nginx:1.25"))
    assert index.match("n1", NGINX, "") == ([ref("web")], f"{NGINX}:1.25")


def test_other_nodes_and_other_repositories_do_not_match() -> None:
    index = index_with(pending_pod("web", "n1", "nginx:1.25"))
    assert index.match("n2", NGINX, "") == ([], "")
    assert index.match("n1", "docker.io/library/redis", "") == ([], "")


def test_short_names_match_the_normalised_repository() -> None:
    index = index_with(pending_pod("a", "n1", "nginx"), pending_pod("b", "n1", "bitnami/redis"))
    assert index.match("n1", NGINX, "") == ([ref("a")], f"{NGINX}:latest")
    assert index.match("n1", "docker.io/bitnami/redis", "") == (
        [ref("b")],
        "docker.io/bitnami/redis:latest",
    )


def test_registry_port_is_dropped_as_containerd_drops_it_from_the_source_label() -> None:
    index = index_with(pending_pod("e2e", "n1", "127.0.0.1:5000/e2e/img1:v1"))
    expected = ([ref("e2e")], "127.0.0.1:5000/e2e/img1:v1")
    assert index.match("n1", "127.0.0.1/e2e/img1", "") == expected
    assert index.match("n1", "127.0.0.1:5000/e2e/img1", "") == expected


def test_every_waiting_reason_matches_and_running_does_not() -> None:
    index = index_with(
        pending_pod("creating", "n1", "nginx:1.25"),
        pending_pod("pull-err", "n1", "nginx:1.25", reason="ErrImagePull"),
        pending_pod("backoff", "n1", "nginx:1.25", reason="ImagePullBackOff"),
        pending_pod("crash", "n1", "nginx:1.25", reason="CrashLoopBackOff"),
        running_pod("up", "n1", "nginx:1.25", f"{NGINX}@{sha('nginx')}"),
    )
    pods, image_ref = index.match("n1", NGINX, "")
    assert pods == [ref("backoff"), ref("creating"), ref("pull-err")]
    assert image_ref == f"{NGINX}:1.25"


def test_pod_stops_matching_once_running_and_when_deleted() -> None:
    index = index_with(pending_pod("web", "n1", "nginx:1.25"))
    assert index.apply_pod(
        "MODIFIED", running_pod("web", "n1", "nginx:1.25", f"{NGINX}@{sha('nginx')}")
    )
    assert index.match("n1", NGINX, "") == ([], "")
    index.apply_pod("MODIFIED", pending_pod("web", "n1", "nginx:1.25"))
    assert index.match("n1", NGINX, "")[0] == [ref("web")]
    index.apply_pod("DELETED", pending_pod("web", "n1", "nginx:1.25"))
    assert index.match("n1", NGINX, "") == ([], "")


def test_unscheduled_pods_never_match() -> None:
    unscheduled = pending_pod("web", "", "nginx:1.25")
    unscheduled["spec"].pop("nodeName")
    index = index_with(unscheduled)
    assert index.match("", NGINX, "") == ([], "")


def test_init_containers_match_and_the_app_container_waits_too() -> None:
    index = index_with(initializing_pod("job", "n1", "busybox:1.36", "nginx:1.25"))
    assert index.match("n1", "docker.io/library/busybox", "") == (
        [ref("job", "init")],
        "docker.io/library/busybox:1.36",
    )
    assert index.match("n1", NGINX, "") == ([ref("job", "app")], f"{NGINX}:1.25")


def test_init_container_that_finished_no_longer_matches() -> None:
    p = pod(
        "job",
        "n1",
        [C("app", "nginx:1.25", waiting("ContainerCreating"))],
        init=[C("init", "busybox:1.36", terminated())],
    )
    index = index_with(p)
    assert index.match("n1", "docker.io/library/busybox", "") == ([], "")


def test_a_known_equal_digest_picks_the_pods_that_want_that_manifest() -> None:
    d1, d2 = sha("v1"), sha("v2")
    index = index_with(
        pending_pod("pinned1", "n1", f"nginx@{d1}"),
        pending_pod("pinned2", "n1", f"nginx@{d2}"),
    )
    assert index.match("n1", NGINX, d1) == ([ref("pinned1")], f"{NGINX}@{d1}")
    assert index.match("n1", NGINX, d2) == ([ref("pinned2")], f"{NGINX}@{d2}")
    # a digest neither pod names (the platform manifest of a multi-arch index) excludes no one
    pods, image_ref = index.match("n1", NGINX, sha("platform"))
    assert pods == [ref("pinned1"), ref("pinned2")] and image_ref == ""


def test_digest_from_image_id_of_a_restarting_container() -> None:
    d1 = sha("v1")
    restarting = pod(
        "old",
        "n1",
        [C("app", "nginx:1.25", waiting("ContainerCreating"), image_id=f"{NGINX}@{d1}")],
    )
    index = index_with(restarting, pending_pod("new", "n1", "nginx:1.26"))
    assert index.match("n1", NGINX, d1) == ([ref("old")], f"{NGINX}:1.25")
    pods, image_ref = index.match("n1", NGINX, "")
    assert pods == [ref("new"), ref("old")] and image_ref == ""


def test_kubelets_pulling_event_says_which_tag_is_downloading() -> None:
    a, b = pending_pod("a", "n1", "nginx:1.25"), pending_pod("b", "n1", "nginx:1.26")
    index = index_with(a, b)
    index.apply_event("ADDED", pulling(b, at(0)))
    assert index.match("n1", NGINX, "") == ([ref("b")], f"{NGINX}:1.26")


def test_kubelet_pull_without_a_waiting_pod_still_names_the_image() -> None:
    index = KubeIndex()
    p = pending_pod("gone", "n1", "nginx:1.25")
    index.apply_event("ADDED", pulling(p, at(0)))
    assert index.match("n1", NGINX, "") == ([], f"{NGINX}:1.25")


def test_relist_drops_pods_deleted_while_not_watching_only_in_its_scope() -> None:
    index = index_with(
        pending_pod("a", "n1", "nginx:1.25", namespace="team-a"),
        pending_pod("b", "n1", "nginx:1.25", namespace="team-b"),
    )
    assert index.replace_pods("team-a", [])
    pods, _ = index.match("n1", NGINX, "")
    assert pods == [ref("b", namespace="team-b")]
    same = pending_pod("b", "n1", "nginx:1.25", namespace="team-b")
    assert not index.replace_pods("team-b", [parse_pod(same)])


def test_unchanged_pod_is_not_a_change() -> None:
    p = pending_pod("web", "n1", "nginx:1.25")
    index = index_with(p)
    assert not index.apply_pod("MODIFIED", p)


def test_pod_with_an_invalid_image_is_ignored_not_fatal() -> None:
    index = index_with(pod("bad", "n1", [C("app", "NOT A REF", running()), C("ok", "nginx:1.25")]))
    assert index.match("n1", NGINX, "") == ([ref("bad", "ok")], f"{NGINX}:1.25")
