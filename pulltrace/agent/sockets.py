"""Where containerd listens, and whether this install can talk to it, decided without importing
the gRPC client: only the ``agent`` extra installs grpcio, and ``ls`` must start fast.

The one place that decides. A path given by flag or environment is the only candidate; without
one, the standard socket and then k3s's are, and the choice is made again whenever the agent
reconnects: containerd may start after the agent, and deletes and recreates its socket on every
restart.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence

DEFAULT_SOCKET = "/run/containerd/containerd.sock"
K3S_SOCKET = "/run/k3s/containerd/containerd.sock"
ENV = "PULLTRACE_CONTAINERD_SOCKET"
MISSING_CLIENT = "reading containerd needs the agent extra: pip install 'pulltrace[agent]'"


def candidates(flag: str | None) -> tuple[str, ...]:
    """The flag, else the environment, as the only choice; else the standard socket, then
    k3s's."""
    explicit = flag or os.environ.get(ENV)
    return (explicit,) if explicit else (DEFAULT_SOCKET, K3S_SOCKET)


def choose(paths: Sequence[str]) -> str:
    """The first of ``paths`` that exists now; the first when none does, so that a message
    names the socket a standard install has."""
    return _first_existing(paths) or paths[0]


def local_socket() -> str | None:
    """A containerd socket on this machine, when there is one."""
    return _first_existing((os.environ.get(ENV, ""), DEFAULT_SOCKET, K3S_SOCKET))


def _first_existing(paths: Sequence[str]) -> str | None:
    return next((p for p in paths if p and os.path.exists(p.removeprefix("unix://"))), None)


def unreachable(path: str, reason: str) -> str:
    """The one wording for containerd not answering: the agent's log and probe, the collector's
    node status, and what ``ls`` and ``watch`` show."""
    return f"containerd unreachable at {path}: {reason}"


def client_installed() -> bool:
    return importlib.util.find_spec("grpc") is not None
