"""``wait``'s pod reads (``pulltrace.kube.api``) with the real client against the API server
double: named pods not created yet are skipped, a selector is the server's, and a refusal is
one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulltrace.kube.api import PodLister, PodListError
from pulltrace.kube.config import load_api_client
from tests.kube.apiserver import ApiServer
from tests.kube.objects import C, pod


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
    with api.outage(), pytest.raises(PodListError) as caught:
        lister.list()
    assert str(caught.value) == "cannot list pods in ci: HTTP 503 Service Unavailable"
