"""Runs the real helm on chart/ and reads what it renders as Kubernetes would.

Renders are parsed with a YAML loader that refuses duplicate keys (PyYAML keeps the last one
silently; kubectl rejects them) and validated with kubernetes-validate's strict schemas for the
Kubernetes version of the kubectl the project ships (1.35): an unknown or misplaced field fails.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testkit.kube.apiserver import ApiServer, Request

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "chart"
KUBE_VERSION = "1.35"  # kubectl v1.35 from scripts/fetch-tools.sh
RELEASE = "pulltrace"
NAMESPACE = "pulltrace"
# Kinds kubernetes-validate has no schema for: custom resources, checked by meaning instead.
CUSTOM_GROUPS = ("monitoring.coreos.com/",)
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}

Obj = dict[str, Any]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that fails on a key given twice in one mapping."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Obj:
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    twice = sorted({str(k) for k in keys if keys.count(k) > 1})
    if twice:
        raise yaml.constructor.ConstructorError(None, None, f"keys twice: {twice}", node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def parse(text: str) -> list[Obj]:
    return [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc]


class HelmFailed(AssertionError):
    def __init__(self, args: list[str], stderr: str) -> None:
        super().__init__(f"helm {' '.join(args)}: {stderr.strip()}")
        self.stderr = stderr


@dataclass(frozen=True)
class Render:
    text: str
    objects: list[Obj]

    def find(self, kind: str, name: str | None = None) -> list[Obj]:
        return [
            o
            for o in self.objects
            if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
        ]

    def one(self, kind: str, name: str | None = None) -> Obj:
        found = self.find(kind, name)
        assert len(found) == 1, f"{len(found)} {kind} {name or ''} in the render"
        return found[0]

    @property
    def agent(self) -> Obj:
        return self.one("DaemonSet", f"{RELEASE}-agent")

    @property
    def collector(self) -> Obj:
        return self.one("Deployment", f"{RELEASE}-collector")

    def secret_data(self, name: str = f"{RELEASE}-tokens") -> dict[str, str]:
        data = self.one("Secret", name).get("data") or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def container(workload: Obj) -> Obj:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1
    found: Obj = containers[0]
    return found


def env(workload: Obj) -> dict[str, Any]:
    """Name -> value (or the valueFrom mapping); a name set twice fails."""
    items = container(workload).get("env", [])
    names = [e["name"] for e in items]
    assert len(names) == len(set(names)), f"env set twice: {names}"
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in items}


class Helm:
    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def run(self, *args: str) -> str:
        argv = [str(self.binary), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise HelmFailed(list(args), done.stderr)
        return done.stdout

    def template(self, *args: str, release: str = RELEASE, namespace: str = NAMESPACE) -> Render:
        text = self.run("template", release, str(CHART), "-n", namespace, *args)
        return Render(text, parse(text))

    def lint(self, *args: str) -> str:
        return self.run("lint", "--strict", str(CHART), *args)

    def notes(self, *args: str, release: str = RELEASE, namespace: str = NAMESPACE) -> str:
        """NOTES.txt as `helm install` prints it; --dry-run=client needs no cluster."""
        out = self.run("install", release, str(CHART), "-n", namespace, "--dry-run=client", *args)
        return out.split("\nNOTES:\n", 1)[1]


def validate(obj: Obj) -> None:
    """kubernetes-validate --strict for Kubernetes 1.35; raises on any schema violation."""
    from kubernetes_validate import utils

    utils.validate(obj, KUBE_VERSION, strict=True)


def is_custom(obj: Obj) -> bool:
    return str(obj.get("apiVersion", "")).startswith(CUSTOM_GROUPS)


# -- an API server for `lookup` ------------------------------------------------------------

_GROUPS: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [
        ("secrets", "Secret", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("services", "Service", True),
    ],
    "apps/v1": [("daemonsets", "DaemonSet", True), ("deployments", "Deployment", True)],
    "rbac.authorization.k8s.io/v1": [
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
    ],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy", True)],
}


def _resources(group_version: str) -> Obj:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {
                "name": plural,
                "singularName": kind.lower(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": ["get", "list", "create", "patch"],
            }
            for plural, kind, namespaced in _GROUPS[group_version]
        ],
    }


def _group(group_version: str) -> Obj:
    name, version = group_version.split("/")
    entry = {"groupVersion": group_version, "version": version}
    return {"name": name, "versions": [entry], "preferredVersion": entry}


@contextmanager
def cluster_with_secrets(secrets: Mapping[str, Mapping[str, str]], tmp: Path) -> Iterator[Path]:
    """A kubeconfig for an API server double that answers helm's discovery and holds these
    Secrets (name -> data) in NAMESPACE, as an earlier install of the release left them;
    every other object does not exist yet. Enough for `helm template --dry-run=server`, whose
    `lookup` then reads them for real."""

    def secret(request: Request) -> None:
        name = request.params["name"]
        if request.params["namespace"] != NAMESPACE or name not in secrets:
            request.status(404, "NotFound", f'secrets "{name}" not found')
            return
        request.json(
            200,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": name,
                    "namespace": NAMESPACE,
                    "labels": {"app.kubernetes.io/managed-by": "Helm"},
                    "annotations": {
                        "meta.helm.sh/release-name": RELEASE,
                        "meta.helm.sh/release-namespace": NAMESPACE,
                    },
                },
                "type": "Opaque",
                "data": {
                    k: base64.b64encode(v.encode()).decode() for k, v in secrets[name].items()
                },
            },
        )

    def not_found(request: Request) -> None:
        request.status(404, "NotFound", "the server could not find the requested resource")

    groups = [gv for gv in _GROUPS if "/" in gv]
    version = {
        "major": "1",
        "minor": KUBE_VERSION.split(".")[1],
        "gitVersion": f"v{KUBE_VERSION}.0",
    }
    core = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    group_list = {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(gv) for gv in groups],
    }
    with ApiServer() as api:
        api.route("GET", "/version", lambda r: r.json(200, version))
        api.route("GET", "/api", lambda r: r.json(200, core))
        api.route("GET", "/apis", lambda r: r.json(200, group_list))
        for gv in ["v1", *groups]:
            path = "/api/v1" if gv == "v1" else f"/apis/{gv}"
            api.route("GET", path, lambda r, gv=gv: r.json(200, _resources(gv)))
        api.route("GET", r"/api/v1/namespaces/(?P<namespace>[^/]+)/secrets/(?P<name>[^/]+)", secret)
        api.route("GET", r"/.*", not_found)
        yield api.kubeconfig(tmp / "kubeconfig.json")
