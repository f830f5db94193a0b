"""The Dockerfiles, .dockerignore and requirements files, checked without a Docker engine: what
each build installs, how the image runs, and hadolint's verdict."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pulltrace.cli import app_commands
from testkit.dockerfile import PREFIX, ROLES, ROOT, DockerIgnore, parse, role_dockerfile
from tests.images.tools import tool

BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$")
PIP_FLAGS = {"--no-cache-dir", "--disable-pip-version-check", f"--prefix={PREFIX}"}
# The agent ships its .pyc files (2.8 MB; it starts faster and peaks about 4 MB lower on every
# node, which cannot write them at run time); the collector does not (kubernetes' would add
# 50 MB to one pod that starts once).
COMPILE_FLAGS = {"agent": set(), "collector": {"--no-compile"}}
USERS = {"agent": "65534:65534", "collector": "10001:10001"}
PORTS = {"agent": ["8081"], "collector": ["8080", "9090"]}
OCI_LABELS = {
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.source",
    "org.opencontainers.image.url",
    "org.opencontainers.image.licenses",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
}
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$")
HASH = re.compile(r"^    --hash=sha256:[0-9a-f]{64}( \\)?$")


def pins(role: str) -> dict[str, str]:
    """name -> version from ``<role>/requirements.txt``; fails on anything but the lock format
    (``name==version`` followed by its ``--hash`` lines)."""
    found: dict[str, str] = {}
    lines = (ROOT / role / "requirements.txt").read_text().splitlines()
    hashes_left = 0
    for number, line in enumerate(lines, 1):
        where = f"{role}/requirements.txt:{number}"
        if match := REQUIREMENT.match(line):
            assert hashes_left == 0, f"{where}: the previous requirement has no hash"
            found[match.group(1)] = match.group(2)
            hashes_left = 1
        elif HASH.match(line):
            assert hashes_left, f"{where}: a hash outside a requirement"
            hashes_left = 1 if line.endswith("\\") else 0
        else:
            assert hashes_left == 0, f"{where}: the requirement's hash lines end with a '\\'"
            assert not line.strip() or line.startswith("#"), f"{where}: {line!r}"
    assert hashes_left == 0, f"{role}/requirements.txt ends inside a requirement"
    return found


@pytest.mark.parametrize("role", ROLES)
def test_the_build_installs_exactly_the_requirements_file_then_pulltrace_without_deps(
    role: str,
) -> None:
    """What the test venvs hold is what these lines install, so they are pinned down here:
    nothing but the hash-locked file and the project itself, neither pulling in dependencies."""
    first, second = role_dockerfile(role).build.pip_installs()
    for argv in (first, second):
        flags = {a for a in argv if a.startswith("--")}
        assert flags - {"--require-hashes"} == PIP_FLAGS | COMPILE_FLAGS[role] | {"--no-deps"}, argv
    assert [a for a in first if not a.startswith("--")] == ["-r", f"{role}/requirements.txt"]
    assert "--require-hashes" in first
    assert [a for a in second if not a.startswith("--")] == ["."]
    assert pins(role), f"{role}/requirements.txt pins nothing"


@pytest.mark.parametrize("role", ROLES)
def test_the_final_stage_only_copies_the_install_and_runs_the_role(role: str) -> None:
    dockerfile = role_dockerfile(role)
    final = dockerfile.final
    assert len(dockerfile.stages) == 2
    copy = f"--from={dockerfile.build.name} {PREFIX} /usr/local"
    assert [i.args for i in final.all("COPY")] == [copy]
    assert final.all("RUN") == [], "the runtime stage runs nothing: no shell step, no package"
    (user,) = final.all("USER")
    assert user.args == USERS[role]
    assert [p for e in final.all("EXPOSE") for p in e.args.split()] == PORTS[role]
    (entrypoint,) = final.all("ENTRYPOINT")
    assert entrypoint.json_args() == ["pulltrace", role]
    assert role in app_commands()
    env = " ".join(i.args for i in final.all("ENV"))
    assert "PULLTRACE_" not in env, "settings come from the chart and the CLI, not the image"
    labels = " ".join(i.args for i in final.all("LABEL"))
    assert set(re.findall(r"(org\.opencontainers\.image\.[a-z]+)=", labels)) == OCI_LABELS
    assert f'org.opencontainers.image.title="pulltrace-{role}"' in labels


def test_every_stage_of_both_images_uses_one_digest_pinned_base() -> None:
    images = {stage.image for role in ROLES for stage in role_dockerfile(role).stages}
    assert len(images) == 1, images
    (image,) = images
    assert BASE.match(image), image


@pytest.mark.parametrize("role", ROLES)
def test_requirements_are_exact_pins_each_with_hashes(role: str) -> None:
    lines = (ROOT / role / "requirements.txt").read_text()
    assert set(pins(role)) >= {"msgspec"}
    assert lines.count("--hash=sha256:") >= len(pins(role))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("role", ROLES)
def test_images_pin_the_versions_the_tests_run_with(role: str) -> None:
    """constraints.txt pins what scripts/test.sh installs; an image shipping another version
    would run code no test ran. After scripts/update-constraints.sh, edit the requirements
    file to match and run scripts/lock-images.py."""
    constraints = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            constraints[canonical(name)] = version.strip()
    for name, version in pins(role).items():
        assert constraints.get(canonical(name)) == version, name


def chart_values() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "chart" / "values.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize("role", ROLES)
def test_the_image_user_and_ports_are_the_charts_defaults(role: str) -> None:
    values = chart_values()[role]
    pod = values["podSecurityContext"]
    assert f"{pod['runAsUser']}:{pod['runAsGroup']}" == USERS[role]
    if role == "agent":  # the socket is root's group on most nodes
        assert pod["supplementalGroups"] == [0]
    keys = ["healthPort"] if role == "agent" else ["containerPort", "metricsContainerPort"]
    assert [str(values[k]) for k in keys] == PORTS[role]


def test_the_agent_installs_neither_the_kubernetes_client_nor_the_terminal_ui() -> None:
    names = {name.lower().replace("_", "-") for name in pins("agent")}
    command_line = {"typer", "shellingham", "annotated-doc"}
    assert names == {"msgspec", "grpcio", "protobuf", "typing-extensions", *command_line}


def test_dockerignore_sends_what_the_builds_copy_and_nothing_else() -> None:
    ignore = DockerIgnore.of_repo()
    sent = ignore.context_files()
    copied: set[str] = set()
    for role in ROLES:
        for copy in role_dockerfile(role).build.all("COPY"):
            copied.update(copy.args.split()[:-1])
    for source in copied:
        assert any(f == source or f.startswith(source + "/") for f in sent), source
    stray = [f for f in sent if not any(f == s or f.startswith(s + "/") for s in copied)]
    assert stray == []
    for kept_out in ("tests", ".git", ".venv", ".tools", "screenshots", "bench", "chart"):
        assert ignore.ignored(kept_out), kept_out
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in sent)
    assert "pulltrace/agent/_pb/content.proto" in sent  # package data the wheel ships


def test_dockerignore_matcher_follows_dockers_rules() -> None:
    """The rules the context test relies on, on paths whose answer Docker documents."""
    ignore = DockerIgnore("*\n!keep\n**/*.log\n!keep/important.log\n# comment\n")
    assert ignore.ignored("anything")
    assert ignore.ignored("dir/below/file")  # its parent matches `*`
    assert not ignore.ignored("keep/file.txt")
    assert ignore.ignored("keep/sub/debug.log")
    assert not ignore.ignored("keep/important.log")  # the last matching rule wins


def hadolint() -> list[str]:
    return [tool("hadolint"), "--no-color", "--config", str(ROOT / ".hadolint.yaml")]


def test_hadolint_finds_nothing_in_either_dockerfile() -> None:
    """.hadolint.yaml sets the threshold to style, so any finding fails."""
    files = [str(ROOT / role / "Dockerfile") for role in ROLES]
    out = subprocess.run(
        [*hadolint(), "--failure-threshold", "error", *files],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout == "", out.stdout + out.stderr
    strict = subprocess.run(
        [*hadolint(), *files], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert strict.returncode == 0 and strict.stdout == "", strict.stdout + strict.stderr


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (("FROM python:", "FROM quay.io/python:"), "DL3026"),  # an untrusted registry
        (("org.opencontainers.image.licenses=", "org.opencontainers.image.license="), "DL3049"),
        (("--no-cache-dir ", ""), "DL3042"),
    ],
)
def test_hadolint_with_our_settings_rejects_a_worse_dockerfile(
    tmp_path: Path, change: tuple[str, str], rule: str
) -> None:
    """The check above could pass by not reading .hadolint.yaml at all; this shows it does."""
    text = (ROOT / "agent" / "Dockerfile").read_text()
    assert change[0] in text
    worse = tmp_path / "Dockerfile"
    worse.write_text(text.replace(*change))
    parse(worse)
    out = subprocess.run(
        [*hadolint(), str(worse)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert out.returncode != 0 and rule in out.stdout, out.stdout + out.stderr
