"""One-shot reads of a collector's REST API with the standard library.

``pulltrace ls`` is run by hand and by scripts many times a minute: it must start about as fast
as kubectl, so this path imports neither asyncio nor httpx (together ~100 ms). The live stream
(``collector.py``) is where httpx and httpx-sse earn their cost.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import TYPE_CHECKING, Any

import msgspec

from pulltrace import __version__
from pulltrace.errors import SourceError
from pulltrace.model import NodeList, NodeStatus, PullList, PullStatus, decode

if TYPE_CHECKING:
    import ssl

PULLS_PATH = "/api/v1/pulls"
NODES_PATH = "/api/v1/nodes"
TIMEOUT = 10.0


class CollectorError(SourceError):
    """Raised by the REST calls when the collector gives no usable answer (unreachable, an
    error status, a body that does not decode): one line that says which."""


class Endpoint(msgspec.Struct, frozen=True):
    """Where a collector answers, and how to reach it (token, TLS, proxy credentials)."""

    base_url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    verify: Any = True  # bool or a CA bundle path
    cert: tuple[str, str] | None = None
    label: str = ""  # what the header shows; the base URL when empty

    @property
    def description(self) -> str:
        return self.label or f"collector {self.base_url}"

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def ssl_context(self) -> ssl.SSLContext:
        import ssl

        if self.verify is False:
            context = ssl._create_unverified_context()
        elif isinstance(self.verify, str):
            context = ssl.create_default_context(cafile=self.verify)
        else:
            context = ssl.create_default_context()
        if self.cert:
            context.load_cert_chain(*self.cert)
        return context


def with_token(endpoint: Endpoint, token: str) -> Endpoint:
    if not token:
        return endpoint
    headers = {**endpoint.headers, "Authorization": f"Bearer {token}"}
    return msgspec.structs.replace(endpoint, headers=headers)


def unreachable(endpoint: Endpoint, err: Exception) -> str:
    """The same words for the REST reads and the live stream."""
    if isinstance(err, TimeoutError):
        return f"collector at {endpoint.base_url} did not answer in time"
    return f"cannot reach the collector at {endpoint.base_url}: {err or type(err).__name__}"


def unreadable(endpoint: Endpoint, err: Exception) -> str:
    return f"collector at {endpoint.base_url} sent data pulltrace cannot read: {err}"


def explain_status(endpoint: Endpoint, status: int, body: bytes) -> str:
    """The collector's own ``{"error": …}`` sentence when it sent one."""
    try:
        reason = str(json.loads(body).get("error", ""))
    except (ValueError, AttributeError):
        text = body.decode("utf-8", "replace").strip()
        reason = text.splitlines()[0][:200] if text else ""
    if status in (401, 403):
        return f"collector at {endpoint.base_url} refused the credentials ({status}): {reason}"
    return f"collector at {endpoint.base_url} answered {status}: {reason}".rstrip(": ")


def get(endpoint: Endpoint, path: str, timeout: float = TIMEOUT) -> tuple[int, bytes]:
    """GET ``path``; raises CollectorError only when no HTTP answer came at all."""
    url = urllib.parse.urlsplit(endpoint.url(path))
    if url.scheme not in ("http", "https") or not url.hostname:
        raise CollectorError(f"not an http(s) URL: {endpoint.base_url!r}")
    target = url.path + (f"?{url.query}" if url.query else "")
    headers = {"User-Agent": f"pulltrace/{__version__}", "Accept": "application/json"}
    headers.update(endpoint.headers)
    try:
        if url.scheme == "http":
            return _plain_get(url.hostname, url.port or 80, target, headers, timeout)
        return _tls_get(endpoint, url.hostname, url.port, target, headers, timeout)
    except (OSError, ValueError) as err:  # http.client's errors are ValueErrors or OSErrors
        raise CollectorError(unreachable(endpoint, err)) from None


def _plain_get(
    host: str, port: int, target: str, headers: dict[str, str], timeout: float
) -> tuple[int, bytes]:
    """HTTP/1.1 over a bare socket: http.client drags in email and ssl (~25 ms of imports)
    for what is one request with ``Connection: close``."""
    import socket

    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if not sep or len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError("not an HTTP response")
    fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    if fields.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return int(parts[1]), body


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            return bytes(out)
        out += data[:size]
        data = data[size + 2 :]


def _tls_get(
    endpoint: Endpoint,
    host: str,
    port: int | None,
    target: str,
    headers: dict[str, str],
    timeout: float,
) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=endpoint.ssl_context())
    try:
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def get_pulls(endpoint: Endpoint, params: dict[str, str] | None = None) -> list[PullStatus]:
    """``GET /api/v1/pulls``; raises CollectorError with one clear line."""
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    status, body = get(endpoint, PULLS_PATH + query)
    if status != 200:
        raise CollectorError(explain_status(endpoint, status, body))
    try:
        return decode(body, PullList).pulls
    except ValueError as err:  # msgspec's errors are ValueErrors
        raise CollectorError(unreadable(endpoint, err)) from None


def get_nodes(endpoint: Endpoint) -> list[NodeStatus] | None:
    """``GET /api/v1/nodes``; None from a collector older than node health (404). Raises
    CollectorError with one clear line."""
    status, body = get(endpoint, NODES_PATH)
    if status == 404:
        return None
    if status != 200:
        raise CollectorError(explain_status(endpoint, status, body))
    try:
        return decode(body, NodeList).nodes
    except ValueError as err:
        raise CollectorError(unreadable(endpoint, err)) from None
