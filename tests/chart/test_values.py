"""helm lint --strict, values.schema.json's answers to bad values, and NOTES.txt."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm import CHART, Helm, HelmFailed
from tests.chart.matrix import EVERYTHING


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--set", "networkPolicy.enabled=true", "--set", "serviceMonitor.enabled=true"],
        ["--set", "agent.enabled=false", "--set", r"collector.watchNamespaces=shop\,ml"],
        ["-f", "everything"],
    ],
    ids=["defaults", "policies", "agent-off-namespaces", "everything"],
)
def test_lint_strict(helm: Helm, tmp_path: Path, args: list[str]) -> None:
    if args == ["-f", "everything"]:
        (tmp_path / "v.yaml").write_text(yaml.safe_dump(EVERYTHING))
        args = ["-f", str(tmp_path / "v.yaml")]
    out = helm.lint(*args)
    assert "1 chart(s) linted, 0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out


# value -> the JSON pointer helm's schema error must name
BAD_VALUES = {
    "auth.agentToken=true": "/auth/agentToken",
    "auth.readToken=two words": "/auth/readToken",
    "agent.containerdSocket=containerd.sock": "/agent/containerdSocket",
    "agent.containerdSocket=/containerd.sock": "/agent/containerdSocket",
    "agent.containerdSocket=/run/containerd/": "/agent/containerdSocket",
    "agent.containerdSocket=/run/../etc/containerd.sock": "/agent/containerdSocket",
    "agent.healthPort=80": "/agent/healthPort",
    "agent.interval=0s": "/agent/interval",
    "agent.interval=soon": "/agent/interval",
    "agent.logLevel=verbose": "/agent/logLevel",
    "agent.enabled=yes": "/agent/enabled",
    "agent.containerdSockett=/run/x/y.sock": "/agent",
    "collector.watchNamespaces=Shop": "/collector/watchNamespaces",
    "collector.watchNamespaces={shop,shop}": "/collector/watchNamespaces",
    "collector.watchNamespaces=12": "/collector/watchNamespaces",
    "collector.containerPort=80": "/collector/containerPort",
    "collector.historyTTL=30": "/collector/historyTTL",
    "collector.history.retention=30x": "/collector/history/retention",
    "collector.history.retention=0d": "/collector/history/retention",
    "collector.history.maxPulls=0": "/collector/history/maxPulls",
    "collector.persistence.enabled=yes": "/collector/persistence/enabled",
    "collector.persistence.size=lots": "/collector/persistence/size",
    "collector.database.existingSecret=Not_A_Name": "/collector/database/existingSecret",
    "webhook.secret=two words": "/webhook/secret",
    "collector.podAnnotations.a=1": "/collector/podAnnotations/a",
    "collector.resources.limits.memory=lots": "/collector/resources/limits/memory",
    "service.port=0": "/service/port",
    "service.port=http": "/service/port",
    "service.type=Ingress": "/service/type",
    "networkPolicy.apiFrom[0].pods=all": "/networkPolicy/apiFrom/0",
    "rbac.viewers.users=alice": "/rbac/viewers/users",
    "serviceMonitor.interval=often": "/serviceMonitor/interval",
    "imagePullSecrets[0]=regcred": "/imagePullSecrets/0",
}


@pytest.mark.parametrize("value", BAD_VALUES)
def test_bad_values_name_the_value_not_a_template(helm: Helm, value: str) -> None:
    with pytest.raises(HelmFailed) as failed:
        helm.template("--set", value)
    message = failed.value.stderr
    assert "values don't meet the specifications of the schema" in message
    assert f"at '{BAD_VALUES[value]}'" in message
    assert "template:" not in message and "nil pointer" not in message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "collector.metricsContainerPort=8080"],
            "collector.containerPort and collector.metricsContainerPort must differ",
        ),
        (["--set", "service.metricsPort=8080"], "service.port and service.metricsPort must differ"),
    ],
)
def test_clashing_ports_fail_with_one_sentence(helm: Helm, args: list[str], message: str) -> None:
    with pytest.raises(HelmFailed) as failed:
        helm.template(*args)
    assert message in failed.value.stderr


def schema_paths(node: dict[str, Any], defs: dict[str, Any], prefix: str = "") -> set[str]:
    """Every property path the schema declares (definitions followed)."""
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[1]]
    paths: set[str] = set()
    for key, sub in node.get("properties", {}).items():
        path = f"{prefix}.{key}" if prefix else key
        paths |= {path} | schema_paths(sub, defs, path)
    return paths


def value_paths(node: Any, prefix: str = "") -> set[str]:
    if not isinstance(node, dict):
        return set()
    paths: set[str] = set()
    for key, sub in node.items():
        path = f"{prefix}.{key}" if prefix else key
        paths |= {path} | value_paths(sub, path)
    return paths


def test_every_schema_property_has_a_default_in_values_yaml() -> None:
    """values.yaml documents every value; the schema (additionalProperties: false) types every
    value of values.yaml, which `helm lint` of the defaults proves."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    declared = schema_paths(schema, schema["definitions"]) - {"global"}
    defaults = value_paths(yaml.safe_load((CHART / "values.yaml").read_text()))
    free_form = ("Selector", "Annotations", "Labels", "labels", "annotations", "resources.")
    assert {p for p in declared - defaults if not any(f in p for f in free_form)} == set()


VALUE_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


@pytest.mark.parametrize("template", sorted((CHART / "templates").glob("*")), ids=lambda p: p.name)
def test_every_value_a_template_reads_is_defined(template: Path) -> None:
    """A misspelt .Values path renders silently as empty: no schema catches it."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for match in VALUE_REF.finditer(template.read_text()):
        node: Any = defaults
        for key in match.group(1).strip(".").split("."):
            assert isinstance(node, dict) and key in node, f"{template.name}: {match.group(0)}"
            node = node[key]


def test_notes_without_read_token_use_the_service_proxy(helm: Helm) -> None:
    notes = helm.notes()
    assert "  pulltrace watch\n" in notes
    assert "--token" not in notes and "port-forward svc/" not in notes
    assert "pulltrace-viewer" in notes and "rbac.viewers" in notes


def test_notes_with_read_token_use_port_forward_and_the_token(helm: Helm) -> None:
    """The API server consumes the Authorization header: the proxy cannot carry the token."""
    notes = helm.notes("--set", "auth.readToken=s3cret", "--set", "service.port=80")
    assert "kubectl -n pulltrace port-forward svc/pulltrace-collector 8080:80" in notes
    assert "pulltrace watch --server http://localhost:8080" in notes
    assert "get secret pulltrace-tokens -o jsonpath='{.data.read-token}'" in notes
    assert "s3cret" not in notes
    assert "  pulltrace watch\n" not in notes


def test_notes_name_the_flags_for_another_release_and_namespace(helm: Helm) -> None:
    notes = helm.notes("--set", "rbac.viewers.groups={devs}", release="pt", namespace="tools")
    flags = "--collector-namespace tools --collector-service pt-pulltrace-collector"
    assert f"pulltrace watch {flags}\n" in notes and f"pulltrace wait {flags} " in notes
    assert "The RoleBinding pt-pulltrace-viewer gives it to group devs" in notes
