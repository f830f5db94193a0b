"""The pod harness (testkit/pod.py) applies what a manifest says and refuses what it cannot
reproduce: a harness that quietly dropped a setting would let the chart test pass for a pod
that never ran as written. No root, no processes: only the translation is checked here."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from testkit.dockerfile import parse
from testkit.pod import (
    SETPRIV,
    Cluster,
    Image,
    Manifests,
    Node,
    PodError,
    _expand,
    identity,
    image_config,
    pod_ip,
    service_env,
    start_pod,
)

FINAL_STAGE = """\
FROM python:3.11-slim AS build
RUN pip install --prefix=/install .

FROM python:3.11-slim
ARG VERSION=dev
LABEL org.opencontainers.image.version="${VERSION}"
COPY --from=build /install /usr/local
ENV A=1 \\
    B="two words"
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["pulltrace", "collector"]
"""


def test_the_final_stage_gives_the_container_its_start(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(FINAL_STAGE)
    got = image_config(parse(dockerfile), tmp_path / "venv")
    assert (got.entrypoint, got.cmd) == (("pulltrace", "collector"), ())
    assert got.env == {"A": "1", "B": "two words"}
    assert (got.user, got.workdir, got.python) == ("10001:10001", "/", tmp_path / "venv")


@pytest.mark.parametrize(
    "line",
    ["RUN useradd -u 10001 app", "ENV PATH=/x:$PATH", "COPY pulltrace /app", "VOLUME /data"],
)
def test_final_stage_lines_it_cannot_reproduce_are_refused(line: str, tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM python:3.11-slim\n{line}\n")
    with pytest.raises(PodError):
        image_config(parse(dockerfile), tmp_path / "venv")


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


def image(user: str = "0") -> Image:
    return Image(("pulltrace", "agent"), (), {}, user, "/", Path("/venv"))


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
    # the image's USER when the pod says nothing
    collector = identity({}, {"capabilities": {"drop": ["NET_RAW"]}}, image("10001:10001"), "c")
    assert (collector.uid, collector.gid, collector.groups) == (10001, 10001, ())
    assert "net_raw" not in collector.caps and "chown" in collector.caps
    assert not collector.no_new_privs


@pytest.mark.parametrize(
    ("pod_sc", "sc"),
    [
        ({"runAsNonRoot": True}, {}),  # the image's USER is 0
        ({"fsGroupChangePolicy": "OnRootMismatch"}, {}),
        ({}, {"fsGroup": 2000}),  # a pod-level field only
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
        {"volumes": [{"name": "v", "emptyDir": {"medium": "Memory"}}]},
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
