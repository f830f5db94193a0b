"""What each image's install adds to its python base image, measured without Docker.

For each role it replays the Dockerfile's build stage (testkit/dockerfile.py: the same
COPY through .dockerignore and the same pip lines) into a fresh ``--prefix``, which is exactly
the directory the runtime stage copies onto the base image, and prints ``du -sb`` of it with
the largest entries. For comparison it also installs what the images installed before they
were trimmed, ``pip install --prefix … ".[agent]"`` and ``".[collector]"`` with dependencies.

    python scripts/image-size.py            # needs the package index, like an image build
    python scripts/image-size.py --no-old   # skip the comparison

The figures are for this machine's architecture; the wheels differ a little per platform.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testkit.dockerfile import (
    ROLES,
    ROOT,
    DockerIgnore,
    pip_env,
    replay,
    role_dockerfile,
)

AGENT_TARGET = 40 * 1000 * 1000
"""Issue 8: the agent's install adds at most 40 MB to the base image."""


def bare_pip(work: Path) -> list[str]:
    """pip in a new venv: like the base image's, it sees no installed package to skip."""
    venv = work / "pip-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    return [str(venv / "bin" / "python"), "-m", "pip", "--quiet"]


def du(path: Path) -> int:
    """``du -sb``: apparent size in bytes, directories included, as the brief asks."""
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def largest(prefix: Path, count: int = 6) -> str:
    (site,) = prefix.glob("lib/python*/site-packages")
    sizes = sorted(((du(p), p.name) for p in site.iterdir()), reverse=True)[:count]
    return ", ".join(f"{name} {mb(size)}" for size, name in sizes)


def mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def role_install(role: str, work: Path, pip: list[str]) -> Path:
    prefix = work / f"{role}-prefix"
    replay(role_dockerfile(role), work / f"{role}-stage", pip, prefix)
    return prefix


def old_install(extra: str, work: Path, pip: list[str]) -> Path:
    """The images' former build step: the package with an extra, dependencies and all."""
    source = work / f"old-{extra}-src"
    for relative in DockerIgnore.of_repo().context_files():
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, source / relative)
    prefix = work / f"old-{extra}-prefix"
    command = [*pip, "install", "--no-cache-dir", "--disable-pip-version-check"]
    command += [f"--prefix={prefix}", f".[{extra}]"]
    subprocess.run(command, cwd=source, env=pip_env(), check=True)
    return prefix


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-old", action="store_true", help="skip the old installs")
    args = parser.parse_args()
    print(f"bytes each install adds to the base image ({platform.machine()}, du -sb)")
    with tempfile.TemporaryDirectory(prefix="image-size-") as tmp:
        work = Path(tmp)
        pip = bare_pip(work)
        sizes = {}
        for role in ROLES:
            prefix = role_install(role, work, pip)
            sizes[role] = du(prefix)
            print(f"{role:<16} {sizes[role]:>12,d} B {mb(sizes[role]):>9}  {largest(prefix)}")
        if not args.no_old:
            for role in ROLES:
                prefix = old_install(role, work, pip)
                old = du(prefix)
                ratio = old / sizes[role]
                print(
                    f"{f'old .[{role}]':<16} {old:>12,d} B {mb(old):>9}  "
                    f"{ratio:.1f}x the new one; {largest(prefix)}"
                )
    verdict = "PASS" if sizes["agent"] <= AGENT_TARGET else "FAIL"
    print(f"{verdict}: agent adds {mb(sizes['agent'])} (target at most {mb(AGENT_TARGET)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
