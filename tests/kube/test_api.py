"""``wait``'s pod reads (``pulltrace.kube.api``) with the real client against the API server
double: named pods not created yet are skipped, a selector is the server's, and a refusal is
one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulltrace.kube.api import KubeApiError, PodLister, preflight
from pulltrace.kube.config import load_api_client
from testkit.kube.apiserver import ApiServer
from testkit.kube.objects import C, pod


def _lister(
    api: ApiServer, tmp_path: Path, names: tuple[str, ...] = (), selector: str = ""
) -> PodLister:
    client = load_api_client(str(api.kubeconfig(tmp_path / "kubeconfig")))
    return PodLister(client, "ci", names=names, selector=selector)


def _labelled(name: str, app: str) -> dict[str, object]:
    obj = pod(name, "node-1", [C("app", "nginx:1.27")], namespace="ci")
    obj["metadata"]["labels"] = {"app": app}
    return obj


def test_named_pods_not_created_yet_are_skipped(api: ApiServer, tmp_path: Path) -> None:
    api.add(_labelled("web-0", "web"))
    pods = _lister(api, tmp_path, names=("web-0", "web-1")).list()
    assert [(p.namespace, p.name, p.node) for p in pods] == [("ci", "web-0", "node-1")]


def test_a_selector_is_the_servers(api: ApiServer, tmp_path: Path) -> None:
    api.add(_labelled("web-0", "web"))
    api.add(_labelled("db-0", "db"))
    pods = _lister(api, tmp_path, selector="app=db").list()
    assert [p.name for p in pods] == ["db-0"]
    assert api.lists("pods")[-1].query.get("labelSelector") == "app=db"


def test_a_refusal_is_one_line(api: ApiServer, tmp_path: Path) -> None:
    lister = _lister(api, tmp_path, selector="app=web")
    with api.outage(), pytest.raises(KubeApiError) as caught:
        lister.list()
    assert str(caught.value) == "cannot list pods in ci: HTTP 503 Service Unavailable"


def test_preflight_lists_one_pod_per_namespace(api: ApiServer, tmp_path: Path) -> None:
    client = load_api_client(str(api.kubeconfig(tmp_path / "kubeconfig")))
    preflight(client, api.url, ["ci", "prod"])
    asked = [(r.path, r.query.get("limit")) for r in api.lists("pods")]
    assert asked == [("/api/v1/namespaces/ci/pods", "1"), ("/api/v1/namespaces/prod/pods", "1")]


def test_preflight_refused_is_one_line(api: ApiServer, tmp_path: Path) -> None:
    client = load_api_client(str(api.kubeconfig(tmp_path / "kubeconfig")))
    with api.outage(), pytest.raises(KubeApiError) as caught:
        preflight(client, api.url)
    expected = f"cannot list pods (all namespaces) on {api.url}: HTTP 503 Service Unavailable"
    assert str(caught.value) == expected


def test_preflight_without_a_server_is_one_line(tmp_path: Path) -> None:
    with ApiServer() as gone:
        client = load_api_client(str(gone.kubeconfig(tmp_path / "kubeconfig")))
    with pytest.raises(KubeApiError) as caught:
        preflight(client, gone.url, ["ci"])
    message = str(caught.value)
    assert message.startswith(f"cannot reach the Kubernetes API server at {gone.url}: ")
    assert "\n" not in message
