#!/usr/bin/env bash
# Re-resolves every dependency at its newest release into constraints.txt, the pins that
# scripts/test.sh (and so CI) installs from. Run it, then `bash scripts/test.sh`: a failure is a
# dependency that moved, found on purpose rather than by a red CI on an unrelated change.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/pip" install --quiet --disable-pip-version-check '.[dev]'
{
    echo "# Pinned by scripts/update-constraints.sh on $(date -u +%Y-%m-%d) with $("$venv/bin/python" -V)."
    echo "# scripts/test.sh installs with -c constraints.txt; run that script to try newer releases."
    "$venv/bin/pip" freeze --exclude-editable --all | grep -viE '^(pulltrace|pip|setuptools|wheel)(==| @ )'
} > constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pins"
