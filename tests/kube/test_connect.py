"""Finding a configuration: in-cluster, kubeconfig, none at all, or a broken one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pulltrace.kube.config import KubeConfigError, load_api_client
from pulltrace.kube.correlator import connect
from pulltrace.model import PodRef
from testkit.kube.apiserver import ApiServer
from testkit.kube.objects import pending_pod
from tests.kube.conftest import WAIT

pytestmark = pytest.mark.k8s


@pytest.fixture
def no_cluster_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No service account environment, and a HOME without ~/.kube."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_no_configuration_anywhere_is_none(
    no_cluster_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(no_cluster_env / "missing" / "config"))
    assert connect([]) is None
    monkeypatch.delenv("KUBECONFIG")
    assert connect([]) is None


def test_kubeconfig_from_env_with_a_bearer_token(
    no_cluster_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ApiServer(token="s3cret") as api:
        api.add(pending_pod("web", "n1", "nginx:1.25", namespace="team-a"))
        path = api.kubeconfig(no_cluster_env / "config")
        monkeypatch.setenv("KUBECONFIG", f"{no_cluster_env / 'absent'}:{path}")
        correlator = connect(["team-a"])
        assert correlator is not None
        try:
            assert correlator.wait_synced(WAIT)
            pods, image_ref = correlator.match("n1", "docker.io/library/nginx", "")
            assert pods == [PodRef(namespace="team-a", pod_name="web", container="app")]
            assert image_ref == "docker.io/library/nginx:1.25"
        finally:
            correlator.close()


def test_default_kubeconfig_in_home(no_cluster_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    (no_cluster_env / ".kube").mkdir()
    with ApiServer() as api:
        api.kubeconfig(no_cluster_env / ".kube" / "config")
        client = load_api_client()
        assert client is not None
        assert client.configuration.host == api.url
        client.close()


def test_explicit_kubeconfig_and_context_win_over_in_cluster(
    no_cluster_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with ApiServer() as api:
        path = api.kubeconfig(no_cluster_env / "kc", context="ci")
        client = load_api_client(str(path), "ci")
        assert client is not None and client.configuration.host == api.url
        client.close()


def test_in_cluster_environment_without_a_service_account_falls_back_to_kubeconfig(
    no_cluster_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    if Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists():
        pytest.skip("this machine has a real service account")
    with ApiServer() as api:
        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(no_cluster_env / "kc")))
        client = load_api_client()
        assert client is not None and client.configuration.host == api.url
        client.close()


BROKEN = {
    "not yaml": "clusters: [unclosed\n  - {",
    "empty": "",
    "a list": "- 1\n- 2\n",
    "no contexts": "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\n",
    "dangling context": (
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "contexts: [{name: c, context: {cluster: nowhere, user: nobody}}]\n"
        "clusters: []\nusers: []\n"
    ),
}


@pytest.mark.parametrize("content", BROKEN.values(), ids=BROKEN.keys())
def test_broken_kubeconfig_is_one_clear_line(
    content: str, no_cluster_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = no_cluster_env / "config"
    path.write_text(content)
    monkeypatch.setenv("KUBECONFIG", str(path))
    with pytest.raises(KubeConfigError) as caught:
        connect([])
    message = str(caught.value)
    assert message.startswith(f"kubeconfig {path}: ")
    assert "\n" not in message and len(message) < 400


def test_unknown_context_is_a_clear_error(no_cluster_env: Path) -> None:
    with ApiServer() as api:
        path = api.kubeconfig(no_cluster_env / "kc")
        with pytest.raises(KubeConfigError, match="nope"):
            connect([], kubeconfig=str(path), context="nope")


def test_explicit_kubeconfig_that_does_not_exist(no_cluster_env: Path) -> None:
    missing = no_cluster_env / "nope.yaml"
    with pytest.raises(KubeConfigError, match=f"kubeconfig {missing}: no such file"):
        connect([], kubeconfig=str(missing))


def test_importing_the_package_does_not_import_the_client() -> None:
    code = (
        "import sys, pulltrace.kube.config, pulltrace.kube.correlator, pulltrace.kube.index; "
        "print('kubernetes' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
