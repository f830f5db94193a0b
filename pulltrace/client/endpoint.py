"""Where a collector answers, and the bounded one-shot GET every source's ``list_once`` uses.

A collector is reached directly (``--server``) or through the Kubernetes API server's service
proxy; only the base URL and the credentials differ, so both are an ``Endpoint``. Every answer
comes from the network and may be hostile or broken, so a request here is bounded three ways:
a total deadline (connect, TLS, headers and body together, not per read: a server that
trickles a byte a second never holds a command), a maximum body size (checked after
decompression, so a gzip bomb is cut as early as a long body), and a decoder that turns
anything unreadable (garbage, deep nesting, the wrong content type, an HTML error page) into
one ``CollectorError`` line.

The GET is httpx's synchronous client, so ``pulltrace ls`` starts no event loop. httpx's
timeouts are per socket operation; the total deadline is enforced beneath it, in httpcore's
network backend, which caps every connect, read and write at the time left.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import msgspec

from pulltrace import __version__
from pulltrace.errors import SourceError

if TYPE_CHECKING:
    import ssl

    import httpcore
    import httpx

T = TypeVar("T")

REQUEST_DEADLINE = 15.0
"""Seconds for one whole GET, from connect to the last body byte."""
MAX_BODY = 64 * 1024 * 1024
"""Bytes of one answer after decompression: a listing of the collector's 20 000 pulls is about
30 MiB; more is a broken or hostile server, stopped before it costs memory."""
MAX_ERROR_BODY = 64 * 1024
"""An error answer is one sentence; only this much of it is read."""


class CollectorError(SourceError):
    """No usable answer from a collector: unreachable, too slow, an error status, or a body
    that does not decode. The message is one line and says which."""


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

    @property
    def tls(self) -> bool:
        return self.base_url.startswith("https:")

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def request_headers(self, accept: str) -> dict[str, str]:
        return {"User-Agent": f"pulltrace/{__version__}", "Accept": accept, **self.headers}

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

    def verify_arg(self) -> ssl.SSLContext | bool:
        """What httpx's ``verify`` gets: the context for https, and for plain http False, which
        spares loading the CA bundle that no handshake would use."""
        return self.ssl_context() if self.tls else False


def with_token(endpoint: Endpoint, token: str) -> Endpoint:
    if not token:
        return endpoint
    headers = {**endpoint.headers, "Authorization": f"Bearer {token}"}
    return msgspec.structs.replace(endpoint, headers=headers)


# --- What the user reads: the same words for the one-shot reads and the live stream ----------


def _printable(text: str, limit: int = 200) -> str:
    from pulltrace.render import printable

    return printable(text, limit)


def unreachable(endpoint: Endpoint, err: BaseException | str) -> str:
    return f"cannot reach the collector at {endpoint.base_url}: {err or type(err).__name__}"


def too_slow(endpoint: Endpoint, seconds: float) -> str:
    return f"collector at {endpoint.base_url} did not answer within {seconds:g} s"


def unreadable(endpoint: Endpoint, why: str) -> str:
    return f"collector at {endpoint.base_url} sent data pulltrace cannot read: {why}"


def too_quiet(endpoint: Endpoint, seconds: float) -> str:
    return f"collector at {endpoint.base_url} sent no event in {seconds:g} s"


def failure(endpoint: Endpoint, err: Exception, seconds: float) -> str:
    """One line for what httpx raised: too slow (``seconds`` was the deadline), not HTTP, or
    not reached at all."""
    import httpx

    if isinstance(err, httpx.TimeoutException):
        return too_slow(endpoint, seconds)
    if isinstance(err, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return f"not an http(s) URL: {_printable(endpoint.base_url)!r}"
    if isinstance(err, httpx.RemoteProtocolError | httpx.DecodingError):
        return unreadable(endpoint, _cause(err))
    return unreachable(endpoint, _cause(err))


def too_large(endpoint: Endpoint, limit: int) -> str:
    return unreadable(endpoint, f"more than {limit // (1024 * 1024)} MiB")


def media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


class _ErrorBody(msgspec.Struct):
    """The collector's ``{"error": …}`` and the API server's Status ``{"message": …}``."""

    error: str = ""
    message: str = ""


def explain_status(
    endpoint: Endpoint, status: int, content_type: str, body: bytes | bytearray
) -> str:
    """One line for an error answer: the server's own sentence when it sent JSON or plain
    text, only the media type for anything else (an HTML page says nothing on one line)."""
    kind = media_type(content_type)
    reason = ""
    if kind == "application/json":
        try:
            parsed = msgspec.json.decode(body, type=_ErrorBody)
            reason = parsed.error or parsed.message
        except (msgspec.MsgspecError, RecursionError):
            reason = "an unreadable JSON error"
    elif kind in ("text/plain", ""):
        text = bytes(body[:MAX_ERROR_BODY]).decode("utf-8", "replace").strip()
        reason = text.splitlines()[0] if text else ""
    else:
        reason = f"a {kind} page"
    reason = _printable(reason)
    if status in (401, 403):
        return f"collector at {endpoint.base_url} refused the credentials ({status}): {reason}"
    return f"collector at {endpoint.base_url} answered {status}: {reason}".rstrip(": ")


def decode_json(endpoint: Endpoint, body: bytes | bytearray, kind: type[T]) -> T:
    """``kind`` out of a JSON body, or CollectorError; deep nesting is an error like any other
    (msgspec raises RecursionError for it)."""
    try:
        return msgspec.json.decode(body, type=kind)
    except (msgspec.MsgspecError, RecursionError) as err:
        raise CollectorError(unreadable(endpoint, _printable(str(err)))) from None


# --- The bounded GET ------------------------------------------------------------------------


class Reply(NamedTuple):
    status: int
    content_type: str
    body: bytes | bytearray


class Deadline:
    """A point in time shared by every socket operation of one request."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    def restart(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def cap(self, timeout: float | None, expired: type[Exception]) -> float:
        left = self.left()
        if left <= 0:
            raise expired("the request's deadline has passed")
        return left if timeout is None else min(timeout, left)


class Client:
    """httpx's sync client whose requests each end by their own deadline; one connection,
    reused between the GETs of one listing."""

    def __init__(self, endpoint: Endpoint) -> None:
        import httpx

        self.endpoint = endpoint
        self.deadline = Deadline(REQUEST_DEADLINE)
        transport = _deadline_transport(endpoint, self.deadline)
        self._http = httpx.Client(transport=transport, timeout=None, trust_env=False)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def get(
        self,
        path: str,
        params: dict[str, str] | None = None,
        *,
        deadline: float = REQUEST_DEADLINE,
        limit: int = MAX_BODY,
    ) -> Reply:
        """GET ``path`` within ``deadline`` seconds, at most ``limit`` bytes of body (less for an
        error status). Raises CollectorError only when no whole answer came."""
        import httpx

        endpoint = self.endpoint
        self.deadline.restart(deadline)
        try:
            headers = endpoint.request_headers("application/json")
            with self._http.stream(
                "GET", endpoint.url(path), params=params, headers=headers
            ) as response:
                error = response.is_error
                cap = MAX_ERROR_BODY if error else limit
                declared = response.headers.get("content-length", "")
                if not error and declared.isdigit() and int(declared) > cap:
                    raise CollectorError(too_large(endpoint, cap))
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > cap:
                        if not error:
                            raise CollectorError(too_large(endpoint, cap))
                        del body[cap:]  # enough of an error page to explain it
                        break
                content_type = response.headers.get("content-type", "")
                return Reply(response.status_code, content_type, body)
        except (httpx.HTTPError, httpx.StreamError, OSError) as err:
            raise CollectorError(failure(endpoint, err, deadline)) from None

    def get_json(self, path: str, kind: type[T], params: dict[str, str] | None = None) -> T:
        """``kind`` from a 200 JSON answer, else CollectorError with one line."""
        reply = self.get(path, params)
        return self.json(reply, kind)

    def json(self, reply: Reply, kind: type[T]) -> T:
        if reply.status != 200:
            raise CollectorError(
                explain_status(self.endpoint, reply.status, reply.content_type, reply.body)
            )
        if media_type(reply.content_type) != "application/json":
            what = _printable(media_type(reply.content_type) or "no content type", 80)
            raise CollectorError(unreadable(self.endpoint, f"{what}, not JSON"))
        return decode_json(self.endpoint, reply.body, kind)


def _cause(err: BaseException) -> str:
    """httpx's message, or the protocol error beneath it: one line, escaped."""
    text = str(err) or type(err).__name__
    return _printable(text.splitlines()[0] if text.strip() else type(err).__name__)


def _deadline_transport(endpoint: Endpoint, deadline: Deadline) -> httpx.BaseTransport:
    import httpcore
    import httpx

    class DeadlineStream(httpcore.NetworkStream):
        def __init__(self, stream: httpcore.NetworkStream) -> None:
            self._stream = stream

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._stream.read(max_bytes, deadline.cap(timeout, httpcore.ReadTimeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._stream.write(buffer, deadline.cap(timeout, httpcore.WriteTimeout))

        def close(self) -> None:
            self._stream.close()

        def start_tls(
            self,
            ssl_context: ssl.SSLContext,
            server_hostname: str | None = None,
            timeout: float | None = None,
        ) -> httpcore.NetworkStream:
            cap = deadline.cap(timeout, httpcore.ConnectTimeout)
            return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, cap))

        def get_extra_info(self, info: str) -> Any:
            return self._stream.get_extra_info(info)

    class DeadlineBackend(httpcore.NetworkBackend):
        def __init__(self) -> None:
            self._backend = httpcore.SyncBackend()

        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> httpcore.NetworkStream:
            cap = deadline.cap(timeout, httpcore.ConnectTimeout)
            stream = self._backend.connect_tcp(host, port, cap, local_address, socket_options)
            return DeadlineStream(stream)

        def connect_unix_socket(
            self, path: str, timeout: float | None = None, socket_options: Any = None
        ) -> httpcore.NetworkStream:
            cap = deadline.cap(timeout, httpcore.ConnectTimeout)
            return DeadlineStream(self._backend.connect_unix_socket(path, cap, socket_options))

        def sleep(self, seconds: float) -> None:
            self._backend.sleep(seconds)

    class DeadlineTransport(httpx.HTTPTransport):
        """httpx's own transport over a pool with the deadline backend. httpx takes no network
        backend, so the pool it would build is not built and this one stands in for it (the
        pool is all ``handle_request`` and ``close`` use)."""

        def __init__(self, pool: httpcore.ConnectionPool) -> None:
            self._pool = pool

    verify = endpoint.verify_arg()
    ssl_context = httpx.create_ssl_context(verify=verify, cert=None, trust_env=False)
    pool = httpcore.ConnectionPool(
        ssl_context=ssl_context, max_connections=1, network_backend=DeadlineBackend()
    )
    return DeadlineTransport(pool)
