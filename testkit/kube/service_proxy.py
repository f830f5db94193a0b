"""The API server's service proxy (``/api/v1/namespaces/<ns>/services/<name>:<port>/proxy/…``)
for the API server double, forwarding to a real collector on loopback.

As the real one: the caller's credentials are checked by the API server and not forwarded,
every method is forwarded with its body (``updates dismiss`` PATCHes through it), responses
stream through chunk by chunk (SSE works), an unknown service is a 404 Status, and a service
with nothing behind it is a 503 "no endpoints available".
"""

from __future__ import annotations

import contextlib
import http.client
from urllib.parse import urlsplit

from testkit.kube.apiserver import ApiServer, Request

PROXY = r"/api/v1/namespaces/(?P<ns>[^/]+)/services/(?P<service>[^/]+)/proxy(?P<rest>/.*)?"
_HOP_BY_HOP = {"connection", "transfer-encoding", "content-length", "keep-alive"}


class ServiceProxy:
    def __init__(self, api: ApiServer) -> None:
        self.services: dict[tuple[str, str], str] = {}  # (namespace, "name:port") -> base URL
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            api.route(method, PROXY, self._forward)

    def expose(self, namespace: str, service: str, target: str | None) -> None:
        """``target`` None: the service exists but no pod backs it."""
        self.services[(namespace, service)] = target or ""

    def _forward(self, request: Request) -> None:
        namespace, service = request.params["ns"], request.params["service"]
        if (namespace, service) not in self.services:
            name = service.split(":")[0]
            request.status(404, "NotFound", f'services "{name}" not found')
            return
        target = self.services[(namespace, service)]
        if not target:
            request.status(
                503, "ServiceUnavailable", f'no endpoints available for service "{service}"'
            )
            return
        url = urlsplit(target)
        path = request.params.get("rest") or "/"
        query = urlsplit(request.handler.path).query
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in _HOP_BY_HOP | {"authorization", "host"}
        }
        try:
            target = path + (f"?{query}" if query else "")
            conn.request(request.method, target, body=request.body or None, headers=headers)
            upstream = conn.getresponse()
        except OSError as err:
            conn.close()
            request.status(503, "ServiceUnavailable", f"error trying to reach service: {err}")
            return
        h = request.handler
        h.send_response(upstream.status)
        for name, value in upstream.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                h.send_header(name, value)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        try:
            while chunk := upstream.read1(65536):
                request.write_chunk(chunk)
            request.end_stream()
        except OSError:
            request.abort()
        finally:
            with contextlib.suppress(OSError):
                conn.close()
