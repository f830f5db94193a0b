#!/usr/bin/env bash
# Regenerates pulltrace/agent/_pb from its .proto files (needs the dev extra: grpcio-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. pulltrace/agent/_pb/*.proto
