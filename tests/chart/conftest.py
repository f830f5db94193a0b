"""The real helm (v4.1.4, what users run), fetched by scripts/fetch-tools.sh once per session.

Off CI a machine that cannot fetch it skips the chart tests; on CI (``CI`` set) that fails
them, because a chart test that silently skips proves nothing.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.chart.helm import REPO, Helm, Render
from tests.chart.matrix import EVERYTHING, MATRIX


def _on_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def helm() -> Helm:
    fetch = subprocess.run(
        ["bash", str(REPO / "scripts" / "fetch-tools.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    binary = Path(fetch.stdout.strip().splitlines()[-1] if fetch.stdout.strip() else "") / "helm"
    if fetch.returncode != 0 or not os.access(binary, os.X_OK):
        reason = f"scripts/fetch-tools.sh could not provide helm: {fetch.stderr.strip()[-500:]}"
        if _on_ci():
            pytest.fail(f"CI must run the chart tests, but {reason}", pytrace=False)
        pytest.skip(reason)
    return Helm(binary)


@pytest.fixture(scope="session")
def render_set(helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Render]:
    """Renders a value set of the matrix by name, once per session."""
    everything = tmp_path_factory.mktemp("values") / "everything.yaml"
    everything.write_text(yaml.safe_dump(EVERYTHING))
    cache: dict[str, Render] = {}

    def render(name: str) -> Render:
        if name not in cache:
            args = ["-f", str(everything)] if name == "everything" else MATRIX[name]
            cache[name] = helm.template(*args)
        return cache[name]

    return render
