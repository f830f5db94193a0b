"""The version a release tag publishes, or one line saying why the tag cannot be released.

The release workflow (.github/workflows/release.yml) runs this first: the images are tagged
with the version without its ``v``, which is what the chart's ``image.tag`` default gives
(Chart.yaml's appVersion), and the package says the same version. A tag that disagrees with
either fails before anything is built or pushed.

    python scripts/release-version.py v0.2.0    # prints 0.2.0, or exits 1
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAG = re.compile(r"^v(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)$")
APP_VERSION = re.compile(r"^appVersion:\s*[\"']?([^\"'\s#]+)[\"']?\s*(?:#.*)?$", re.M)


def versions(root: Path) -> dict[str, str]:
    """What each file says the version is: pyproject.toml's and the chart's appVersion."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    found = APP_VERSION.findall((root / "chart" / "Chart.yaml").read_text())
    if len(found) != 1:
        raise ValueError("chart/Chart.yaml: expected one top-level appVersion")
    return {"pyproject.toml version": project, "chart/Chart.yaml appVersion": found[0]}


def release_version(tag: str, root: Path = ROOT) -> str:
    match = TAG.match(tag)
    if not match:
        raise ValueError(f"tag {tag!r} is not v<major>.<minor>.<patch>[-<pre>]")
    version = match.group(1)
    for where, said in versions(root).items():
        if said != version:
            raise ValueError(f"tag {tag} releases {version}, but {where} is {said}")
    return version


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: release-version.py TAG", file=sys.stderr)
        return 2
    try:
        print(release_version(argv[0]))
    except (ValueError, OSError, KeyError) as err:
        print(f"release: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
