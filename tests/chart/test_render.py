"""Every value set of the matrix, rendered by the real helm, is valid Kubernetes 1.35
(kubernetes-validate --strict) and means what the chart promises: the agent's security context,
mounts and probes, the collector's ports, RBAC, NetworkPolicy and ServiceMonitor wiring."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

from tests.chart.helm import (
    CLUSTER_SCOPED,
    NAMESPACE,
    RELEASE,
    Helm,
    Obj,
    Render,
    container,
    env,
    is_custom,
    pod_spec,
    validate,
)
from tests.chart.matrix import NAMES

RenderSet = Callable[[str], Render]
AGENT_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 65534,
    "runAsGroup": 65534,
    "supplementalGroups": [0],
    "seccompProfile": {"type": "RuntimeDefault"},
}
AGENT_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def workloads(render: Render) -> list[Obj]:
    return render.find("DaemonSet") + render.find("Deployment")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("name", NAMES)
def test_render_is_valid_kubernetes(render_set: RenderSet, name: str) -> None:
    render = render_set(name)
    assert render.objects
    for obj in render.objects:
        if is_custom(obj):
            with pytest.raises(SchemaNotFoundError):  # checked by meaning below
                validate(obj)
            continue
        try:
            validate(obj)
        except ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {err.message}")


def test_the_validator_rejects_what_kubernetes_rejects(render_set: RenderSet) -> None:
    """The check above can fail: strict mode refuses a misplaced field and a wrong type."""
    agent = render_set("defaults").agent
    misplaced = {**agent, "spec": {**agent["spec"], "tolerations": [{"operator": "Exists"}]}}
    with pytest.raises(ValidationError):
        validate(misplaced)
    wrong = {**agent, "spec": {**agent["spec"], "minReadySeconds": "10"}}
    with pytest.raises(ValidationError):
        validate(wrong)


@pytest.mark.parametrize("name", NAMES)
def test_namespaced_objects_name_their_namespace(render_set: RenderSet, name: str) -> None:
    """`helm template | kubectl apply` must not drop objects into kubectl's namespace."""
    for obj in render_set(name).objects:
        ns = obj["metadata"].get("namespace")
        if obj["kind"] in CLUSTER_SCOPED:
            assert ns is None, obj["metadata"]["name"]
        elif obj["kind"] in ("Role", "RoleBinding") and obj["metadata"]["name"].endswith(
            "-collector"
        ):
            assert ns in ("shop", "ml"), ns  # the collector's Roles live where it watches
        else:
            assert ns == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize("name", NAMES)
def test_probes_and_secrets_point_at_what_exists(render_set: RenderSet, name: str) -> None:
    render = render_set(name)
    secrets = {s["metadata"]["name"]: s.get("data", {}) for s in render.find("Secret")}
    for workload in workloads(render):
        c = container(workload)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe in ("livenessProbe", "readinessProbe"):
            assert c[probe]["httpGet"]["port"] in ports, f"{workload['kind']} {probe}"
        for value in env(workload).values():
            ref = value.get("secretKeyRef") if isinstance(value, dict) else None
            if ref is None:
                continue
            if ref["name"] == "pulltrace-db":  # the user's own, for PostgreSQL
                assert name == "history-postgres" and ref["key"] == "url"
            elif name == "existing-secret":
                assert ref["name"] == "my-tokens"
            elif not ref.get("optional"):
                assert ref["key"] in secrets[ref["name"]]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selects(workload["spec"]["selector"]["matchLabels"], labels)
        assert pod_spec(workload)["enableServiceLinks"] is False  # no PULLTRACE_COLLECTOR_PORT
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert set(annotations) <= {"checksum/auth", "example.com/team"}, annotations


@pytest.mark.parametrize("name", [n for n in NAMES if n != "agent-off"])
def test_agent_runs_unprivileged_on_every_node(render_set: RenderSet, name: str) -> None:
    agent = render_set(name).agent
    spec = pod_spec(agent)
    assert spec["securityContext"] == AGENT_POD_SECURITY
    assert container(agent)["securityContext"] == AGENT_SECURITY
    assert spec["automountServiceAccountToken"] is False
    assert {"operator": "Exists"} in spec["tolerations"]
    assert spec["nodeSelector"]["kubernetes.io/os"] == "linux"  # Windows nodes: no agent
    assert not spec.get("hostNetwork") and not spec.get("hostPID")


@pytest.mark.parametrize("name", ["defaults", "tokens", "network-policy"])
def test_agent_mounts_both_containerd_directories_by_default(
    render_set: RenderSet, name: str
) -> None:
    agent = render_set(name).agent
    volumes = {v["name"]: v["hostPath"] for v in pod_spec(agent)["volumes"]}
    mounts = {m["name"]: m for m in container(agent)["volumeMounts"]}
    assert sorted(v["path"] for v in volumes.values()) == ["/run/containerd", "/run/k3s/containerd"]
    for vol, host in volumes.items():
        assert host["type"] == "DirectoryOrCreate"  # a directory: never the socket file
        assert mounts[vol]["mountPath"] == host["path"] and mounts[vol]["readOnly"] is True
    assert "PULLTRACE_CONTAINERD_SOCKET" not in env(agent)  # the agent finds the socket itself


@pytest.mark.parametrize("name", ["custom-socket", "everything"])
def test_a_custom_socket_mounts_its_directory_and_names_the_socket(
    render_set: RenderSet, name: str
) -> None:
    agent = render_set(name).agent
    volumes = pod_spec(agent)["volumes"]
    mounts = container(agent)["volumeMounts"]
    assert [v["hostPath"] for v in volumes] == [
        {"path": "/var/run/custom", "type": "DirectoryOrCreate"}
    ]
    assert [(m["mountPath"], m["readOnly"]) for m in mounts] == [("/var/run/custom", True)]
    assert env(agent)["PULLTRACE_CONTAINERD_SOCKET"] == "/var/run/custom/containerd.sock"


@pytest.mark.parametrize(("name", "port"), [("defaults", 8081), ("everything", 9108)])
def test_agent_health_port_serves_both_probes(render_set: RenderSet, name: str, port: int) -> None:
    agent = render_set(name).agent
    c = container(agent)
    assert c["ports"] == [{"name": "health", "containerPort": port, "protocol": "TCP"}]
    assert env(agent)["PULLTRACE_AGENT_HEALTH_LISTEN"] == f":{port}"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}


@pytest.mark.parametrize(("name", "port"), [("defaults", 8080), ("service-port-80", 80)])
def test_service_port_changes_only_the_service(render_set: RenderSet, name: str, port: int) -> None:
    """A uid-10001 process cannot bind :80, so service.port must not reach the container."""
    render = render_set(name)
    c = container(render.collector)
    assert c["args"] == ["--listen=:8080", "--metrics-listen=:9090"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080, "metrics": 9090}
    service = render.one("Service", f"{RELEASE}-collector")
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"http": (port, "http"), "metrics": (9090, "metrics")}
    assert env(render.agent)["PULLTRACE_SERVER_URL"] == (
        f"http://{RELEASE}-collector.{NAMESPACE}.svc:{port}"
    )
    labels = render.collector["spec"]["template"]["metadata"]["labels"]
    assert selects(service["spec"]["selector"], labels)


def test_collector_runs_unprivileged(render_set: RenderSet) -> None:
    collector = render_set("defaults").collector
    pod = pod_spec(collector)["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 10001
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(collector)["securityContext"]
    assert c["runAsNonRoot"] is True and c["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["allowPrivilegeEscalation"] is False and c["readOnlyRootFilesystem"] is True
    assert c["capabilities"] == {"drop": ["ALL"]}


def test_names_match_what_the_cli_looks_for(render_set: RenderSet) -> None:
    from pulltrace.client.kubeconfig import DEFAULT_NAMESPACE, DEFAULT_PORT, DEFAULT_SERVICE

    assert (RELEASE, NAMESPACE) == ("pulltrace", DEFAULT_NAMESPACE)
    service = render_set("defaults").one("Service", DEFAULT_SERVICE)
    assert service["metadata"]["namespace"] == DEFAULT_NAMESPACE
    assert DEFAULT_PORT in [p["name"] for p in service["spec"]["ports"]]


def rules(role: Obj) -> list[tuple[list[str], list[str]]]:
    return [(r["resources"], r["verbs"]) for r in role["rules"]]


def test_collector_may_only_list_and_watch_pods_and_events(render_set: RenderSet) -> None:
    render = render_set("defaults")
    role = render.one("ClusterRole", f"{RELEASE}-collector")
    assert rules(role) == [(["pods", "events"], ["list", "watch"])]
    binding = render.one("ClusterRoleBinding", f"{RELEASE}-collector")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"{RELEASE}-collector", "namespace": NAMESPACE}
    ]
    assert pod_spec(render.collector)["serviceAccountName"] == f"{RELEASE}-collector"


@pytest.mark.parametrize(
    ("name", "namespaces"),
    [("watch-namespaces-list", ["shop", "ml"]), ("watch-namespaces-string", ["shop"])],
)
def test_watch_namespaces_get_roles_instead_of_a_cluster_role(
    render_set: RenderSet, name: str, namespaces: list[str]
) -> None:
    render = render_set(name)
    assert not render.find("ClusterRole") and not render.find("ClusterRoleBinding")
    roles = render.find("Role", f"{RELEASE}-collector")
    assert [r["metadata"]["namespace"] for r in roles] == namespaces
    assert all(rules(r) == [(["pods", "events"], ["list", "watch"])] for r in roles)
    bindings = render.find("RoleBinding", f"{RELEASE}-collector")
    assert [b["metadata"]["namespace"] for b in bindings] == namespaces
    assert env(render.collector)["PULLTRACE_WATCH_NAMESPACES"] == ",".join(namespaces)


def test_watch_namespaces_as_a_string_equal_the_list(helm: Helm) -> None:
    as_list = helm.template("--set", "collector.watchNamespaces={shop,ml}")
    as_string = helm.template("--set", r"collector.watchNamespaces=shop\, ml\,shop")
    without_secret = [o for o in as_list.objects if o["kind"] != "Secret"]
    assert without_secret == [o for o in as_string.objects if o["kind"] != "Secret"]


def test_viewer_role_grants_only_the_collector_proxy(render_set: RenderSet) -> None:
    render = render_set("defaults")
    role = render.one("Role", f"{RELEASE}-viewer")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["services/proxy"],
            "resourceNames": [f"{RELEASE}-collector", f"{RELEASE}-collector:http"],
            "verbs": ["get"],
        }
    ]
    assert not render.find("RoleBinding")


def test_viewers_are_bound_to_the_viewer_role(render_set: RenderSet) -> None:
    binding = render_set("everything").one("RoleBinding", f"{RELEASE}-viewer")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": f"{RELEASE}-viewer",
    }
    assert binding["subjects"] == [
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"},
        {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs"},
        {"kind": "ServiceAccount", "name": "ci", "namespace": "builds"},
    ]


def policy(render: Render, component: str) -> Obj:
    return render.one("NetworkPolicy", f"{RELEASE}-{component}")


def ingress_by_port(np: Obj) -> dict[str, Any]:
    return {r["ports"][0]["port"]: r.get("from") for r in np["spec"]["ingress"]}


def test_network_policy_opens_the_api_to_all_and_metrics_to_the_listed(
    render_set: RenderSet,
) -> None:
    render = render_set("network-policy")
    np = policy(render, "collector")
    labels = render.collector["spec"]["template"]["metadata"]["labels"]
    assert selects(np["spec"]["podSelector"]["matchLabels"], labels)
    assert np["spec"]["policyTypes"] == ["Ingress"]
    # no "from": any source, the API server's service proxy included (it is not a pod)
    assert ingress_by_port(np) == {
        "http": None,
        "metrics": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}],
    }
    ports = {p["name"] for p in container(render.collector)["ports"]}
    assert set(ingress_by_port(np)) <= ports
    agent_np = policy(render, "agent")
    agent_labels = render.agent["spec"]["template"]["metadata"]["labels"]
    assert selects(agent_np["spec"]["podSelector"]["matchLabels"], agent_labels)
    assert agent_np["spec"]["ingress"] == [] and agent_np["spec"]["policyTypes"] == ["Ingress"]


def test_restricted_api_still_admits_the_agents(render_set: RenderSet) -> None:
    render = render_set("everything")
    allowed = ingress_by_port(policy(render, "collector"))["http"]
    agent_labels = render.agent["spec"]["template"]["metadata"]["labels"]
    assert selects(allowed[0]["podSelector"]["matchLabels"], agent_labels)
    assert allowed[1:] == [
        {"ipBlock": {"cidr": "10.0.0.0/24"}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ci"}}},
    ]


def test_no_network_policy_unless_enabled(render_set: RenderSet) -> None:
    assert not render_set("defaults").find("NetworkPolicy")


@pytest.mark.parametrize("name", ["service-monitor", "everything"])
def test_service_monitor_scrapes_the_collector_service(render_set: RenderSet, name: str) -> None:
    render = render_set(name)
    sm = render.one("ServiceMonitor", f"{RELEASE}-collector")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["namespace"] == NAMESPACE
    assert set(sm["spec"]) == {"namespaceSelector", "selector", "endpoints"}
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    service = render.one("Service", f"{RELEASE}-collector")
    assert selects(sm["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    [endpoint] = sm["spec"]["endpoints"]
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert endpoint["path"] == "/metrics"
    if name == "everything":
        assert endpoint == {
            "port": "metrics",
            "path": "/metrics",
            "interval": "15s",
            "scrapeTimeout": "10s",
        }
        assert sm["metadata"]["labels"]["release"] == "prometheus"


def test_no_service_monitor_unless_enabled(render_set: RenderSet) -> None:
    assert not render_set("defaults").find("ServiceMonitor")


def test_agent_off_leaves_only_the_collector(render_set: RenderSet) -> None:
    render = render_set("agent-off")
    assert not render.find("DaemonSet")
    assert [sa["metadata"]["name"] for sa in render.find("ServiceAccount")] == [
        f"{RELEASE}-collector"
    ]


def test_every_value_set_reaches_the_objects(render_set: RenderSet) -> None:
    """The "everything" set is not silently ignored: each of its values shows up."""
    render = render_set("everything")
    collector, agent = render.collector, render.agent
    digest = "sha256:" + "ab" * 32
    assert container(collector)["image"] == f"ghcr.io/pulltrace/pulltrace-collector@{digest}"
    assert container(agent)["image"] == "ghcr.io/pulltrace/pulltrace-agent:0.2.0"
    assert container(agent)["imagePullPolicy"] == "Always"
    assert env(collector)["PULLTRACE_HISTORY_TTL"] == "2h"
    assert env(collector)["PULLTRACE_LOG_LEVEL"] == "debug"
    assert env(agent)["PULLTRACE_REPORT_INTERVAL"] == "500ms"
    assert "--stall-timeout=2m" in container(agent)["args"]
    assert pod_spec(collector)["priorityClassName"] == "system-cluster-critical"
    assert pod_spec(agent)["priorityClassName"] == "system-node-critical"
    assert pod_spec(collector)["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod_spec(collector)["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod_spec(collector)["affinity"]
    assert agent["spec"]["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": 2, "maxSurge": 0}
    assert collector["spec"]["template"]["metadata"]["labels"]["example.com/cost"] == "ops"
    for workload in (collector, agent):
        assert pod_spec(workload)["imagePullSecrets"] == [{"name": "regcred"}]
    service = render.one("Service", f"{RELEASE}-collector")
    assert service["spec"]["type"] == "NodePort"
    assert service["metadata"]["annotations"] == {"example.com/lb": "internal"}
    assert render.secret_data() == {
        "agent-token": "12345678",
        "read-token": "read-me",
        "webhook-secret": "hook-me",
    }
    assert env(collector)["PULLTRACE_HISTORY_RETENTION"] == "7d"
    assert env(collector)["PULLTRACE_HISTORY_MAX_PULLS"] == "5000"
    claim = render.one("PersistentVolumeClaim", f"{RELEASE}-collector-data")
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "fast"


def volume(collector: Obj) -> Obj:
    (data,) = [v for v in pod_spec(collector)["volumes"] if v["name"] == "data"]
    return data


def test_history_defaults_to_sqlite_on_an_empty_dir(render_set: RenderSet) -> None:
    render = render_set("defaults")
    collector = render.collector
    assert env(collector)["PULLTRACE_DATA_DIR"] == "/var/lib/pulltrace"
    assert env(collector)["PULLTRACE_HISTORY_RETENTION"] == "30d"
    assert env(collector)["PULLTRACE_HISTORY_MAX_PULLS"] == "1000000"
    assert "PULLTRACE_DATABASE" not in env(collector)
    assert container(collector)["volumeMounts"] == [
        {"name": "data", "mountPath": "/var/lib/pulltrace"}
    ]
    assert volume(collector) == {"name": "data", "emptyDir": {}}
    assert pod_spec(collector)["securityContext"]["fsGroup"] == 10001
    assert not render.find("PersistentVolumeClaim")
    webhook = env(collector)["PULLTRACE_WEBHOOK_SECRET"]["secretKeyRef"]
    assert webhook["key"] == "webhook-secret" and webhook["optional"] is True
    assert "webhook-secret" not in render.secret_data()


def test_history_on_an_existing_claim_with_a_webhook_secret(render_set: RenderSet) -> None:
    render = render_set("history-claim")
    assert volume(render.collector)["persistentVolumeClaim"] == {"claimName": "my-history"}
    assert not render.find("PersistentVolumeClaim")  # the user's claim, not ours
    assert render.secret_data()["webhook-secret"] == "d1un-s3cret"


def test_history_in_postgres_has_no_volume(render_set: RenderSet) -> None:
    collector = render_set("history-postgres").collector
    ref = env(collector)["PULLTRACE_DATABASE"]["secretKeyRef"]
    assert ref == {"name": "pulltrace-db", "key": "url"}
    assert "PULLTRACE_DATA_DIR" not in env(collector)
    assert "volumes" not in pod_spec(collector)
    assert "volumeMounts" not in container(collector)


def test_a_webhook_secret_change_restarts_the_collector(helm: Helm) -> None:
    def annotation(*args: str) -> str:
        collector = helm.template(*args).collector
        return str(collector["spec"]["template"]["metadata"]["annotations"]["checksum/auth"])

    assert annotation("--set", "webhook.secret=a") != annotation("--set", "webhook.secret=b")
