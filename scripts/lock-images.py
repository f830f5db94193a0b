"""Refresh the ``--hash`` lines of agent/requirements.txt and collector/requirements.txt.

Each image installs its requirements file with ``pip install --no-deps --require-hashes``: the
file names every distribution the role imports at run time, pinned with ``==``, and nothing
else. To change a version, edit its ``name==version`` line and run this script; it downloads,
for each platform the release workflow builds (linux/amd64, linux/arm64), the wheel that the
image's pip would pick for CPython 3.11 on Debian bookworm (glibc 2.36), and writes the sha256
of every one of them. Comment lines and the order of requirements are kept.

    python scripts/lock-images.py            # rewrite both files
    python scripts/lock-images.py --check    # exit 1 when a file's hashes are not current

It reads no pip configuration file and no ``PIP_*`` variable, so the hashes are those of the
public index (which the image build uses), never of a local mirror or wheel cache.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = (ROOT / "agent" / "requirements.txt", ROOT / "collector" / "requirements.txt")
PYTHON = "3.11"
GLIBC_MINOR = 36  # Debian bookworm: the base image's glibc is 2.36
ARCHES = ("x86_64", "aarch64")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)\s*(\\)?\s*$")
_HASH_LINE = re.compile(r"^\s+--hash=sha256:[0-9a-f]{64}\s*\\?\s*$")


def platforms(arch: str) -> list[str]:
    """The manylinux tags a glibc 2.36 pip accepts, best first (pip does not expand them)."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_MINOR, 16, -1)]
    # pip widens manylinux2014 to manylinux2010 and manylinux1 itself (x86_64 only)
    return [*tags, f"manylinux2014_{arch}"]


def parse(text: str) -> list[str | tuple[str, str]]:
    """Comment and blank lines as text, requirements as (name, version); hash lines dropped."""
    items: list[str | tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if _HASH_LINE.match(line):
            continue
        match = PIN.match(line)
        if match:
            items.append((match.group(1), match.group(2)))
        elif not line.strip() or line.lstrip().startswith("#"):
            items.append(line)
        else:
            raise SystemExit(f"line {number}: expected name==version, a --hash or a comment")
    return items


def wheel_hashes(pins: list[tuple[str, str]]) -> dict[str, set[str]]:
    """sha256 of each platform's wheel for each pin, by normalized name."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    hashes: dict[str, set[str]] = {normalize(name): set() for name, _ in pins}
    with tempfile.TemporaryDirectory(prefix="lock-images-") as tmp:
        for arch in ARCHES:
            dest = Path(tmp) / arch
            command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
            command += ["--disable-pip-version-check", "--only-binary=:all:", "--dest", str(dest)]
            command += ["--implementation", "cp", "--python-version", PYTHON]
            command += ["--abi", "cp" + PYTHON.replace(".", "")]
            for tag in platforms(arch):
                command += ["--platform", tag]
            command += [f"{name}=={version}" for name, version in pins]
            subprocess.run(command, check=True, env=env)
            for wheel in dest.glob("*.whl"):
                name = normalize(wheel.name.split("-")[0])
                hashes[name].add(hashlib.sha256(wheel.read_bytes()).hexdigest())
    missing = [name for name, found in hashes.items() if not found]
    if missing:
        raise SystemExit(f"no wheel downloaded for {', '.join(missing)}")
    return hashes


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def render(items: list[str | tuple[str, str]], hashes: dict[str, set[str]]) -> str:
    lines: list[str] = []
    for item in items:
        if isinstance(item, str):
            lines.append(item)
            continue
        name, version = item
        found = sorted(hashes[normalize(name)])
        lines.append(f"{name}=={version} \\")
        lines += [f"    --hash=sha256:{h} \\" for h in found[:-1]]
        lines.append(f"    --hash=sha256:{found[-1]}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args()
    stale = []
    for path in FILES:
        text = path.read_text()
        items = parse(text)
        pins = [item for item in items if isinstance(item, tuple)]
        fresh = render(items, wheel_hashes(pins))
        if fresh == text:
            continue
        stale.append(path.relative_to(ROOT))
        if not args.check:
            path.write_text(fresh)
    verb = "stale" if args.check else "rewrote"
    for path in stale:
        print(f"{verb}: {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
