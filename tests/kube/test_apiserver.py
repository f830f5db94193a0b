"""The double answers the official client the way kube-apiserver does, models and all."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from testkit.kube.apiserver import ApiServer
from testkit.kube.objects import at, pending_pod, pulling, running_pod, sha

pytestmark = pytest.mark.k8s


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer(token="t0ken") as server:
        yield server


def core(api: ApiServer, token: str | None = "t0ken") -> Any:
    cfg = client.Configuration(host=api.url)
    if token:
        cfg.api_key = {"authorization": token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
    return client.CoreV1Api(client.ApiClient(cfg))


def test_lists_deserialise_into_the_clients_models(api: ApiServer) -> None:
    web = api.add(pending_pod("web", "n1", "nginx:1.25"))
    api.add(pending_pod("other", "n2", "nginx:1.25", namespace="team"))
    api.add(pulling(web, at(0)))
    pods = core(api).list_pod_for_all_namespaces()
    assert pods.kind == "PodList" and pods.metadata.resource_version == str(api.resource_version)
    assert [(p.metadata.namespace, p.metadata.name) for p in pods.items] == [
        ("default", "web"),
        ("team", "other"),
    ]
    waiting = pods.items[0].status.container_statuses[0].state.waiting
    assert waiting.reason == "ContainerCreating"
    events = core(api).list_namespaced_event("default")
    (event,) = events.items
    assert (event.reason, event.source.host, event.involved_object.field_path) == (
        "Pulling",
        "n1",
        "spec.containers{app}",
    )
    assert event.first_timestamp == at(0)


def test_watch_replays_from_a_version_then_streams_live(api: ApiServer) -> None:
    start = api.resource_version
    api.add(pending_pod("web", "n1", "nginx:1.25"))
    w = watch.Watch()
    seen = []
    for event in w.stream(
        core(api).list_namespaced_pod,
        "default",
        resource_version=str(start),
        allow_watch_bookmarks=True,
        timeout_seconds=30,
    ):
        obj = event["object"]  # a bookmark stays a dict: the client does not deserialise it
        seen.append(
            (event["type"], obj["metadata"] if isinstance(obj, dict) else obj.metadata.name)
        )
        if len(seen) == 1:
            api.modify(running_pod("web", "n1", "nginx:1.25", f"docker.io/library/nginx@{sha()}"))
        elif len(seen) == 2:
            api.bookmark()
        else:
            w.stop()
    bookmark = {"resourceVersion": str(api.resource_version)}
    assert seen == [("ADDED", "web"), ("MODIFIED", "web"), ("BOOKMARK", bookmark)]
    assert w.resource_version == str(api.resource_version)


def test_watch_from_a_compacted_version_is_410_gone(api: ApiServer) -> None:
    old = api.resource_version
    api.add(pending_pod("web", "n1", "nginx:1.25"))
    floor = api.compact()
    with pytest.raises(ApiException) as caught:
        list(
            watch.Watch().stream(
                core(api).list_pod_for_all_namespaces, resource_version=str(old), timeout_seconds=5
            )
        )
    assert caught.value.status == 410
    assert caught.value.reason == f"Expired: too old resource version: {old} ({floor})"


def test_field_selectors_filter_and_turn_changes_into_adds_and_deletes(api: ApiServer) -> None:
    start = api.resource_version
    api.add(pending_pod("web", "n1", "nginx:1.25"))
    api.modify(running_pod("web", "n1", "nginx:1.25", f"docker.io/library/nginx@{sha()}"))
    api.add(pending_pod("elsewhere", "n2", "nginx:1.25"))
    kinds = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            core(api).list_pod_for_all_namespaces,
            resource_version=str(start),
            field_selector="status.phase=Pending,spec.nodeName=n1",
            timeout_seconds=1,
        )
    ]
    assert kinds == [("ADDED", "web"), ("DELETED", "web")]
    listed = core(api).list_pod_for_all_namespaces(field_selector="spec.nodeName!=n1")
    assert [p.metadata.name for p in listed.items] == ["elsewhere"]


def test_unsupported_field_selector_is_400(api: ApiServer) -> None:
    with pytest.raises(ApiException) as caught:
        core(api).list_event_for_all_namespaces(field_selector="message=x")
    assert caught.value.status == 400
    assert "field label not supported: message" in caught.value.body


def test_requests_without_the_token_are_401(api: ApiServer) -> None:
    with pytest.raises(ApiException) as caught:
        core(api, token=None).list_pod_for_all_namespaces()
    assert caught.value.status == 401


def test_unknown_paths_are_404_and_routes_can_be_added(api: ApiServer) -> None:
    def hello(request: Any) -> None:
        request.json(200, {"service": request.params["name"], "path": request.params["rest"]})

    api.route(
        "GET",
        r"/api/v1/namespaces/(?P<ns>[^/]+)/services/(?P<name>[^/]+)/proxy(?P<rest>/.*)",
        hello,
    )
    api_client = core(api).api_client
    path = "/api/v1/namespaces/pulltrace/services/collector:8080/proxy/api/v1/pulls"
    data = api_client.call_api(
        "GET", api.url + path, header_params={"Authorization": "Bearer t0ken"}
    )
    data.read()
    assert data.status == 200 and b'"service": "collector:8080"' in data.data
    missing = api_client.call_api(
        "GET",
        api.url + "/apis/apps/v1/deployments",
        header_params={"Authorization": "Bearer t0ken"},
    )
    missing.read()
    assert missing.status == 404


def test_limited_lists_come_in_pages_of_one_snapshot(api: ApiServer) -> None:
    for name in ("a", "b", "c", "d", "e"):
        api.add(pending_pod(name, "n1", "nginx:1.25"))
    snapshot = str(api.resource_version)
    first = core(api).list_namespaced_pod("default", limit=2)
    assert [p.metadata.name for p in first.items] == ["a", "b"]
    assert first.metadata.resource_version == snapshot
    assert first.metadata.remaining_item_count == 3
    # what changes between pages is not in them: the snapshot is the first page's
    api.delete(api.get("Pod", "default", "c") or {})
    api.add(pending_pod("bb", "n1", "nginx:1.25"))
    second = core(api).list_namespaced_pod("default", limit=2, _continue=first.metadata._continue)
    assert [p.metadata.name for p in second.items] == ["c", "d"]
    assert second.metadata.resource_version == snapshot
    assert second.metadata.remaining_item_count == 1
    last = core(api).list_namespaced_pod("default", limit=2, _continue=second.metadata._continue)
    assert [p.metadata.name for p in last.items] == ["e"]
    assert last.metadata._continue is None and last.metadata.remaining_item_count is None
    # a selector leaves the count out, as etcd's store does
    selected = core(api).list_namespaced_pod("default", limit=1, field_selector="spec.nodeName=n1")
    assert selected.metadata._continue and selected.metadata.remaining_item_count is None


def test_a_continue_token_compacted_away_is_410_expired(api: ApiServer) -> None:
    api.add(pending_pod("a", "n1", "nginx:1.25"))
    api.add(pending_pod("b", "n1", "nginx:1.25"))
    first = core(api).list_namespaced_pod("default", limit=1)
    api.add(pending_pod("c", "n1", "nginx:1.25"))
    api.compact()
    with pytest.raises(ApiException) as gone:
        core(api).list_namespaced_pod("default", limit=1, _continue=first.metadata._continue)
    assert gone.value.status == 410 and '"reason": "Expired"' in gone.value.body
    with pytest.raises(ApiException) as bad:
        core(api).list_namespaced_pod("default", limit=1, _continue="bm90LWEtdG9rZW4")
    assert bad.value.status == 400 and "continue key is not valid" in bad.value.body
