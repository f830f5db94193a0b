"""Listen addresses for the roles' servers (the collector's API and metrics, the agent's probes):
a leaf module, so that the agent binds its probe port without importing the collector."""

from __future__ import annotations

import re
import socket

from pulltrace.errors import UsageError

_ADDRESS = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]*)):(?P<port>\d{1,5})$")


class ConfigError(UsageError, ValueError):
    """Raised for a bad flag or environment value of a role (address, namespace, duration) and
    by ``listen_socket`` when the address cannot be bound: one sentence for the user."""


Address = tuple[str, int]
"""(host, port); host "" means every interface."""


def parse_address(text: str, what: str = "listen address") -> Address:
    """``:8080`` (every interface), ``127.0.0.1:8080`` or ``[::1]:8080``."""
    match = _ADDRESS.match(text.strip())
    port = int(match.group("port")) if match else -1
    if match is None or port > 65535:
        raise ConfigError(f"{what}: invalid address {text!r} (e.g. :8080 or 127.0.0.1:8080)")
    return (match.group("v6") or match.group("host") or "", port)


def format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_socket(address: Address, flag: str) -> socket.socket:
    """A listening socket, non-blocking, for the collector's servers and the agent's probes.
    Every interface for an empty host: IPv6 and IPv4 together where the kernel allows it."""
    host, port = address
    candidates = [(host, socket.AF_INET6 if ":" in host else socket.AF_INET)]
    if not host:
        candidates = [("::", socket.AF_INET6), ("0.0.0.0", socket.AF_INET)]
    error: OSError | None = None
    for bind_host, family in candidates:
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as err:  # a kernel without IPv6
            error = err
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and not host:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((bind_host, port))
            sock.listen(2048)
        except OSError as err:
            sock.close()
            error = err
            continue
        sock.setblocking(False)
        return sock
    reason = error.strerror if error is not None and error.strerror else str(error)
    raise ConfigError(f"{flag}: cannot listen on {format_address(address)}: {reason}")
