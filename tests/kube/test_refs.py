"""Image references normalise exactly as containerd's distribution/reference does."""

from __future__ import annotations

import pytest

from pulltrace.kube.refs import InvalidReference, agent_repo_key, normalize, parse, repo_key

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("ref", "normal", "key"),
    [
        ("nginx", "docker.io/library/nginx:latest", "docker.io/library/nginx"),
        ("nginx:1.25", "docker.io/library/nginx:1.25", "docker.io/library/nginx"),
        ("library/nginx:1.25", "docker.io/library/nginx:1.25", "docker.io/library/nginx"),
        ("docker.io/nginx", "docker.io/library/nginx:latest", "docker.io/library/nginx"),
        ("index.docker.io/nginx", "docker.io/library/nginx:latest", "docker.io/library/nginx"),
        ("bitnami/redis:7", "docker.io/bitnami/redis:7", "docker.io/bitnami/redis"),
        ("ghcr.io/org/app:v1", "ghcr.io/org/app:v1", "ghcr.io/org/app"),
        ("127.0.0.1:5000/e2e/img1:v1", "127.0.0.1:5000/e2e/img1:v1", "127.0.0.1/e2e/img1"),
        ("registry.local:5000/a/b", "registry.local:5000/a/b:latest", "registry.local/a/b"),
        ("localhost/app", "localhost/app:latest", "localhost/app"),
        ("localhost:5000/app:dev", "localhost:5000/app:dev", "localhost/app"),
        ("[::1]:5000/app:1", "[::1]:5000/app:1", "::1/app"),
        (f"nginx@{D}", f"docker.io/library/nginx@{D}", "docker.io/library/nginx"),
        (f"nginx:1.25@{D}", f"docker.io/library/nginx:1.25@{D}", "docker.io/library/nginx"),
        (f"reg:5000/x/y@{D}", f"reg:5000/x/y@{D}", "reg/x/y"),
        ("a.b/c/d/e:f-g.h_i", "a.b/c/d/e:f-g.h_i", "a.b/c/d/e"),
        ("my_org/my-app__x:1", "docker.io/my_org/my-app__x:1", "docker.io/my_org/my-app__x"),
    ],
)
def test_normalisation(ref: str, normal: str, key: str) -> None:
    assert normalize(ref) == normal
    assert repo_key(ref) == key


def test_parts() -> None:
    r = parse(f"reg.io:443/team/app:v2@{D}")
    assert (r.domain, r.path, r.tag, r.digest) == ("reg.io:443", "team/app", "v2", D)
    assert r.name == "reg.io:443/team/app"


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ("", "empty"),
        ("NGINX", "lowercase"),
        ("nginx:", "invalid tag"),
        ("nginx:-x", "invalid tag"),
        ("nginx@sha256:123", "invalid digest"),
        ("a" * 64, "image ID"),
        ("-bad.io/x", "invalid registry host"),
        ("docker.io/a//b", "invalid repository name"),
    ],
)
def test_invalid_references_say_why(ref: str, problem: str) -> None:
    with pytest.raises(InvalidReference, match=problem):
        parse(ref)


@pytest.mark.parametrize(
    ("repository", "key"),
    [
        ("docker.io/library/nginx", "docker.io/library/nginx"),
        ("127.0.0.1/e2e/img1", "127.0.0.1/e2e/img1"),
        ("127.0.0.1:5000/e2e/img1", "127.0.0.1/e2e/img1"),
        # no dot: still a host, because the agent's repository is already normalised
        ("myreg/team/app", "myreg/team/app"),
    ],
)
def test_agent_repository_keys(repository: str, key: str) -> None:
    assert agent_repo_key(repository) == key
