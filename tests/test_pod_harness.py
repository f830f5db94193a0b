"""The pod harness (tests/infra/pod.py) applies what a manifest says and refuses what it cannot
reproduce: a harness that quietly dropped a setting would let the chart test pass for a pod
that never ran as written. No root, no processes: only the translation is checked here."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.infra.pod import (
    SETPRIV,
    Cluster,
    Image,
    Manifests,
    Node,
    PodError,
    _expand,
    identity,
    parse_dockerfile,
    pod_ip,
    service_env,
    start_pod,
)

DOCKERFILE = """\
# build
FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements.txt ./
RUN pip install --no-cache-dir --prefix=/install --no-deps -r requirements.txt \\
    && pip install --prefix /install --no-deps .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 pulltrace
USER 10001
ENV A=1 \\
    B="two words"
ENTRYPOINT ["pulltrace", "collector"]
"""


def test_dockerfile_gives_the_final_stage_and_the_pip_lines_without_their_target() -> None:
    build, final = parse_dockerfile(DOCKERFILE)
    assert build.steps == [
        ("copy", ["requirements.txt", "./"]),
        ("pip", ["--no-cache-dir", "--no-deps", "-r", "requirements.txt"]),
        ("pip", ["--no-deps", "."]),
    ]
    assert build.workdir == "/src"
    assert final.entrypoint == ["pulltrace", "collector"] and final.cmd == []
    assert final.env == {"A": "1", "B": "two words"}
    assert (final.user, final.system_uids) == ("10001", {10001})


@pytest.mark.parametrize(
    "line",
    ["RUN apt-get install -y curl", "ENV PATH=/x:$PATH", "VOLUME /data", 'SHELL ["bash"]'],
)
def test_dockerfile_lines_it_cannot_reproduce_are_refused(line: str) -> None:
    with pytest.raises(PodError):
        parse_dockerfile(f"FROM python:3.11-slim\n{line}\n")


def test_variable_expansion_follows_kubernetes() -> None:
    env = {"NODE": "n1"}
    assert _expand("--node=$(NODE)", env) == "--node=n1"
    assert _expand("$$(NODE) $(OTHER)", env) == "$(NODE) $(OTHER)"


def test_service_links_are_the_variables_kubelet_sets() -> None:
    service = {
        "kind": "Service",
        "metadata": {"name": "pulltrace-collector"},
        "spec": {"ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}]},
    }
    cluster = Cluster("127.0.0.1", 6443, Path("/ca.crt"), "token")
    env = service_env(Manifests("ns", [service]), cluster, links=True)
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == env["KUBERNETES_SERVICE_PORT_HTTPS"] == "6443"
    assert env["PULLTRACE_COLLECTOR_SERVICE_PORT"] == "8080"
    assert env["PULLTRACE_COLLECTOR_SERVICE_PORT_METRICS"] == "9090"
    assert env["PULLTRACE_COLLECTOR_PORT"] == f"tcp://{pod_ip()}:8080"
    assert env["PULLTRACE_COLLECTOR_PORT_9090_TCP_ADDR"] == pod_ip()
    without = service_env(Manifests("ns", [service]), cluster, links=False)
    assert not any(k.startswith("PULLTRACE_") for k in without)


def image(user: str = "0", system_uids: frozenset[int] = frozenset()) -> Image:
    return Image(("pulltrace", "agent"), (), {}, user, "/", Path("/venv"), system_uids)


def test_identity_applies_the_security_contexts() -> None:
    pod_sc = {"runAsUser": 65534, "runAsGroup": 65534, "supplementalGroups": [0]}
    sc = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    who = identity(pod_sc, sc, image(), "agent")
    assert who.setpriv() == [
        SETPRIV, "--reuid=65534", "--regid=65534", "--groups=0", "--no-new-privs",
        "--inh-caps=-all", "--bounding-set=-all", "--",
    ]  # fmt: skip
    assert who.read_only_root
    # the image's USER when the pod says nothing; a useradd'ed uid has a group of its own
    collector = identity(
        {}, {"capabilities": {"drop": ["NET_RAW"]}}, image("10001", frozenset({10001})), "c"
    )
    assert (collector.uid, collector.gid, collector.groups) == (10001, 65534, ())
    assert "net_raw" not in collector.caps and "chown" in collector.caps
    assert not collector.no_new_privs


@pytest.mark.parametrize(
    ("pod_sc", "sc"),
    [
        ({"runAsNonRoot": True}, {}),  # the image's USER is 0
        ({"fsGroup": 2000}, {}),
        ({}, {"privileged": True}),
        ({}, {"capabilities": {"add": ["SYS_ADMIN"]}}),
    ],
)
def test_identity_refuses_what_it_cannot_apply(
    pod_sc: dict[str, object], sc: dict[str, object]
) -> None:
    with pytest.raises(PodError):
        identity(pod_sc, sc, image(), "agent")


def test_host_paths_are_checked_as_kubelet_checks_them(tmp_path: Path) -> None:
    node = Node("n1", tmp_path)
    made = node.host_path("/run/k3s/containerd", "DirectoryOrCreate")
    assert made.is_dir() and made == tmp_path / "run/k3s/containerd"
    with pytest.raises(PodError, match="does not exist on n1"):
        node.host_path("/run/containerd/containerd.sock", "Socket")
    with pytest.raises(PodError, match="is not a Socket"):
        node.host_path("/run/k3s/containerd", "Socket")
    with pytest.raises(PodError, match="only /run"):
        node.host_path("/var/lib/containerd", "Directory")


def workload(**changes: object) -> dict[str, object]:
    container: dict[str, object] = {"name": "agent", "image": "repo/agent:1", "env": []}
    spec: dict[str, object] = {"containers": [container], "automountServiceAccountToken": False}
    for key, value in changes.items():
        (container if key in ("env", "ports", "lifecycle") else spec)[key] = value
    return {"kind": "DaemonSet", "metadata": {"name": "a"}, "spec": {"template": {"spec": spec}}}


SECRET = {
    "kind": "Secret",
    "metadata": {"name": "tokens"},
    "data": {"agent-token": base64.b64encode(b"t").decode()},
}


@pytest.mark.parametrize(
    "changes",
    [
        {"hostNetwork": True},
        {"initContainers": []},
        {"lifecycle": {}},
        {"volumes": [{"name": "v", "emptyDir": {}}]},
        {"env": [{"name": "P", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
        {"env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "tokens", "key": "x"}}}]},
        {"env": [{"name": "C", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]},
    ],
)
def test_a_pod_asking_for_what_is_not_reproduced_does_not_start(
    changes: dict[str, object], tmp_path: Path
) -> None:
    with pytest.raises(PodError):
        start_pod(
            workload(**changes),
            Manifests("ns", [SECRET]),
            node=Node("n1", tmp_path / "node"),
            cluster=Cluster("127.0.0.1", 6443, tmp_path / "ca.crt", "token"),
            images={"repo/agent": image()},
            workdir=tmp_path / "pods",
        )
