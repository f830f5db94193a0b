"""The release workflow, checked without GitHub: actionlint (with shellcheck for its scripts),
the version gate it runs first, and that it publishes what the chart pulls."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from testkit.dockerfile import ROLES, ROOT
from tests.images.tools import tool, tool_env

WORKFLOWS = ROOT / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yml"


def release_version_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "release_version", ROOT / "scripts" / "release-version.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    tool("shellcheck")  # without it on PATH actionlint skips run: scripts silently
    return subprocess.run(
        [tool("actionlint"), "-no-color", *map(str, files)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=tool_env(),
        timeout=120,
    )


def test_actionlint_finds_nothing_in_the_workflows() -> None:
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert RELEASE in files
    out = actionlint(*files)
    assert out.returncode == 0 and out.stdout == "", out.stdout + out.stderr


@pytest.mark.parametrize(
    ("change", "finding"),
    [
        (("platforms: linux", "platform: linux"), 'input "platform" is not defined'),
        (("outputs.version }}", "outputs.versoin }}"), 'property "versoin" is not defined'),
        (('"$GITHUB_REF_NAME"', "$GITHUB_REF_NAME"), "SC2086"),  # shellcheck, through actionlint
    ],
)
def test_actionlint_rejects_a_broken_release_workflow(
    tmp_path: Path, change: tuple[str, str], finding: str
) -> None:
    text = RELEASE.read_text()
    assert change[0] in text
    broken = tmp_path / ".github" / "workflows" / "release.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text.replace(*change))
    out = actionlint(broken)
    assert out.returncode != 0 and finding in out.stdout, out.stdout + out.stderr


def workflow() -> dict[str, Any]:
    loaded = yaml.safe_load(RELEASE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_release_runs_on_version_tags_and_gates_on_the_version_first() -> None:
    flow = workflow()
    on = flow[True]  # YAML 1.1 reads the key `on` as a boolean
    assert on == {"push": {"tags": ["v*"]}}
    assert flow["permissions"] == {"contents": "write", "packages": "write"}
    jobs = flow["jobs"]
    gate = " ".join(step.get("run", "") for step in jobs["version"]["steps"])
    assert 'python3 scripts/release-version.py "$GITHUB_REF_NAME"' in gate
    assert jobs["images"]["needs"] == "version"
    assert set(jobs["chart"]["needs"]) == {"version", "images"}


def expand(text: str, role: str, version: str) -> str:
    """The workflow's expressions for one matrix entry and release."""
    text = text.replace("${{ matrix.role }}", role)
    return text.replace("${{ needs.version.outputs.version }}", version)


def test_the_images_pushed_are_the_ones_the_chart_pulls_by_default() -> None:
    """The chart's image is <repository>:<tag or appVersion>; the workflow's must be that for
    a release of appVersion, for both roles and both platforms."""
    values = yaml.safe_load((ROOT / "chart" / "values.yaml").read_text())
    chart = yaml.safe_load((ROOT / "chart" / "Chart.yaml").read_text())
    templates = " ".join(p.read_text() for p in (ROOT / "chart" / "templates").glob("*"))
    assert "Chart.AppVersion" in templates
    job = workflow()["jobs"]["images"]
    roles = [entry["role"] for entry in job["strategy"]["matrix"]["include"]]
    assert sorted(roles) == sorted(ROLES)
    (build,) = [s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-")]
    assert build["with"]["push"] is True
    assert set(build["with"]["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    version = chart["appVersion"]
    assert build["with"]["tags"] == "${{ env.IMAGE }}"
    for role in roles:
        image = f"{values[role]['image']['repository']}:{version}"
        assert values[role]["image"]["tag"] == ""
        assert expand(job["env"]["IMAGE"], role, version) == image
        assert (ROOT / expand(build["with"]["file"], role, version)).is_file()


def test_the_version_gate_accepts_the_current_version() -> None:
    gate = release_version_module()
    version = gate.versions(ROOT)["pyproject.toml version"]
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "release-version.py"), f"v{version}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, f"{version}\n", "")


def fake_repo(tmp_path: Path, project: str, app: str) -> Path:
    (tmp_path / "chart").mkdir()
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "x"\nversion = "{project}"\n')
    (tmp_path / "chart" / "Chart.yaml").write_text(
        f'apiVersion: v2\nname: x\nversion: 9.9.9\nappVersion: "{app}"\n'
    )
    return tmp_path


@pytest.mark.parametrize(
    ("tag", "project", "app", "error"),
    [
        ("v1.2.0", "1.2.0", "1.2.0", None),
        ("v1.2.0-rc.1", "1.2.0-rc.1", "1.2.0-rc.1", None),
        (
            "v1.2.0",
            "1.1.0",
            "1.2.0",
            "tag v1.2.0 releases 1.2.0, but pyproject.toml version is 1.1.0",
        ),
        (
            "v1.2.0",
            "1.2.0",
            "1.1.0",
            "tag v1.2.0 releases 1.2.0, but chart/Chart.yaml appVersion is 1.1.0",
        ),
        ("1.2.0", "1.2.0", "1.2.0", "tag '1.2.0' is not v<major>.<minor>.<patch>[-<pre>]"),
        ("v1.2", "1.2", "1.2", "tag 'v1.2' is not v<major>.<minor>.<patch>[-<pre>]"),
    ],
)
def test_the_version_gate_names_the_file_that_disagrees(
    tmp_path: Path, tag: str, project: str, app: str, error: str | None
) -> None:
    gate = release_version_module()
    root = fake_repo(tmp_path, project, app)
    if error is None:
        assert gate.release_version(tag, root) == tag[1:]
    else:
        with pytest.raises(ValueError) as raised:
            gate.release_version(tag, root)
        assert str(raised.value) == error
