"""Tokens: given ones (strings or numbers) reach the Secret as typed, a generated one is made
once and read back by `lookup`, and no render changes a pod template unless a value did."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.helm import RELEASE, Helm, HelmFailed, Render, cluster_with_secrets

TOKENS = f"{RELEASE}-tokens"


def pod_templates(render: Render) -> list[str]:
    """The workloads' YAML as helm printed it, byte for byte."""
    docs = render.text.split("\n---\n")
    return [d for d in docs if "\nkind: DaemonSet\n" in d or "\nkind: Deployment\n" in d]


def checksum(render: Render, kind: str) -> str:
    annotations = render.one(kind)["spec"]["template"]["metadata"]["annotations"]
    return str(annotations["checksum/auth"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "auth.agentToken=12345"], "12345"),
        (["--set", "auth.agentToken=123456789012345678901234"], "123456789012345678901234"),
        (["--set-string", "auth.agentToken=007"], "007"),
        (["--set", "auth.agentToken=tok-EN_1.~"], "tok-EN_1.~"),
    ],
)
def test_given_agent_token_is_kept_as_typed(helm: Helm, args: list[str], expected: str) -> None:
    assert helm.template(*args).secret_data(TOKENS) == {"agent-token": expected}


def test_numbers_in_a_values_file_are_not_printed_as_floats(helm: Helm, tmp_path: Path) -> None:
    """YAML numbers reach templates as float64: toString would give 1.2345678e+07."""
    values = tmp_path / "v.yaml"
    values.write_text("auth:\n  agentToken: 12345678\n  readToken: 9007199254740991\n")
    data = helm.template("-f", str(values)).secret_data(TOKENS)
    assert data == {"agent-token": "12345678", "read-token": "9007199254740991"}


def test_a_number_too_long_for_yaml_is_refused(helm: Helm, tmp_path: Path) -> None:
    values = tmp_path / "v.yaml"
    values.write_text("auth:\n  agentToken: 123456789012345678901\n")
    with pytest.raises(HelmFailed) as failed:
        helm.template("-f", str(values))
    assert "auth.agentToken: a number this long loses digits in a YAML values file; quote it" in (
        failed.value.stderr
    )


def test_existing_secret_is_used_and_none_is_made(helm: Helm) -> None:
    render = helm.template("--set", "auth.existingSecret=my-tokens")
    assert not render.find("Secret")


def test_generated_token_does_not_change_pod_templates(helm: Helm) -> None:
    """helm template, Argo CD and --dry-run cannot read the Secret back, so they generate a
    new token each time; no pod may restart for that."""
    first, second = helm.template(), helm.template()
    assert first.secret_data(TOKENS)["agent-token"] != second.secret_data(TOKENS)["agent-token"]
    assert len(pod_templates(first)) == 2
    assert pod_templates(first) == pod_templates(second)
    token = first.secret_data(TOKENS)["agent-token"]
    assert all(token not in doc for doc in pod_templates(first))


def test_renders_with_given_tokens_are_byte_identical(helm: Helm) -> None:
    args = ["--set", "auth.agentToken=12345", "--set", "auth.readToken=r"]
    assert helm.template(*args).text == helm.template(*args).text


def test_changing_a_given_token_restarts_the_pods_that_use_it(helm: Helm) -> None:
    base = helm.template("--set", "auth.agentToken=a", "--set", "auth.readToken=r")
    agent_changed = helm.template("--set", "auth.agentToken=b", "--set", "auth.readToken=r")
    read_changed = helm.template("--set", "auth.agentToken=a", "--set", "auth.readToken=s")
    for kind in ("DaemonSet", "Deployment"):
        assert checksum(agent_changed, kind) != checksum(base, kind)
    assert checksum(read_changed, "Deployment") != checksum(base, "Deployment")
    assert checksum(read_changed, "DaemonSet") == checksum(base, "DaemonSet")  # agents: no reads


def test_generated_token_is_read_back_from_the_cluster(helm: Helm, tmp_path: Path) -> None:
    """`helm upgrade` renders with the cluster: lookup finds the Secret the install made and
    keeps its token, so agents and collector keep agreeing and no pod restarts."""
    with cluster_with_secrets({TOKENS: {"agent-token": "made-at-install"}}, tmp_path) as kc:
        server = ["--dry-run=server", "--disable-openapi-validation", "--kubeconfig", str(kc)]
        first = helm.template(*server)
        second = helm.template(*server)
    assert first.secret_data(TOKENS) == {"agent-token": "made-at-install"}
    assert first.text == second.text
    assert pod_templates(first) == pod_templates(helm.template())


def test_first_install_generates_a_strong_token(helm: Helm, tmp_path: Path) -> None:
    with cluster_with_secrets({}, tmp_path) as kc:
        render = helm.template(
            "--dry-run=server", "--disable-openapi-validation", "--kubeconfig", str(kc)
        )
    token = render.secret_data(TOKENS)["agent-token"]
    assert len(token) == 40 and token.isalnum()


def test_a_given_token_wins_over_the_stored_one(helm: Helm, tmp_path: Path) -> None:
    with cluster_with_secrets({TOKENS: {"agent-token": "old"}}, tmp_path) as kc:
        render = helm.template(
            "--dry-run=server",
            "--disable-openapi-validation",
            "--kubeconfig",
            str(kc),
            "--set",
            "auth.agentToken=new",
        )
    assert render.secret_data(TOKENS) == {"agent-token": "new"}
