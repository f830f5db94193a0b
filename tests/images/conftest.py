"""One venv per image role, built once per test session from exactly what its Dockerfile
installs (see ``dockerfile.replay``)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit.dockerfile import ROLES, replay, role_dockerfile


@dataclass(frozen=True)
class RoleVenv:
    role: str
    path: Path
    installs: list[list[str]]
    """The pip commands that built it, as run."""

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def entrypoint(self) -> list[str]:
        """The image's ENTRYPOINT, its executable resolved in the venv's bin (as on PATH)."""
        (instruction,) = role_dockerfile(self.role).final.all("ENTRYPOINT")
        program, *args = instruction.json_args()
        return [str(self.path / "bin" / program), *args]

    def distributions(self) -> dict[str, str]:
        """Installed distribution -> version, as the venv's own Python sees them."""
        code = (
            "import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
        )
        out = subprocess.run(
            [str(self.python), "-I", "-c", code], capture_output=True, text=True, check=True
        ).stdout
        found: dict[str, str] = json.loads(out)
        return found


def _build(role: str, where: Path) -> RoleVenv:
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    installs = replay(role_dockerfile(role), where / "stage", pip)
    return RoleVenv(role, venv, installs)


@pytest.fixture(scope="session")
def role_venv(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], RoleVenv]:
    """``role_venv("agent")``: built on first use, then shared by the whole session."""
    built: dict[str, RoleVenv] = {}
    lock = threading.Lock()

    def get(role: str) -> RoleVenv:
        assert role in ROLES, role
        with lock:
            if role not in built:
                built[role] = _build(role, tmp_path_factory.mktemp(f"image-{role}"))
            return built[role]

    return get
