"""Where containerd listens, and whether this install can talk to it, decided without importing
the gRPC client: only the ``agent`` extra installs grpcio, and ``ls`` must start fast."""

from __future__ import annotations

import importlib.util
import os

DEFAULT_SOCKET = "/run/containerd/containerd.sock"
K3S_SOCKET = "/run/k3s/containerd/containerd.sock"
ENV = "PULLTRACE_CONTAINERD_SOCKET"
MISSING_CLIENT = "reading containerd needs the agent extra: pip install 'pulltrace[agent]'"


def containerd_socket(flag: str | None) -> str:
    """The flag, the environment, the standard socket, or k3s's when only that exists."""
    return flag or os.environ.get(ENV) or local_socket() or DEFAULT_SOCKET


def local_socket() -> str | None:
    """A containerd socket on this machine, when there is one."""
    for path in (os.environ.get(ENV), DEFAULT_SOCKET, K3S_SOCKET):
        if path and os.path.exists(path.removeprefix("unix://")):
            return path
    return None


def client_installed() -> bool:
    return importlib.util.find_spec("grpc") is not None
