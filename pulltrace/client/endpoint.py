"""Where a collector answers, and the bounded one-shot GET every source's ``list_once`` uses.

A collector is reached directly (``--server``) or through the Kubernetes API server's service
proxy; only the base URL and the credentials differ, so both are an ``Endpoint``. Every answer
comes from the network and may be hostile or broken, so a request here is bounded three ways:
a total deadline (connect, TLS, headers and body together, not per read: a server that
trickles a byte a second never holds a command), a maximum size of headers and body (the GET
asks for no compression, so the bytes counted are the bytes held), and a decoder that turns
anything unreadable (garbage, deep nesting, the wrong content type, an HTML error page) into
one ``CollectorError`` line.

HTTP/1.1 is parsed by h11, the sans-I/O parser beneath httpx and httpcore, so that no protocol
parsing is written here; only the socket loop around it is, which is where a total deadline is
exact (every ``recv`` waits at most the time left). httpx itself is what the live stream uses;
for this GET it would cost ``pulltrace ls`` more start-up time than all of kubectl's: in one
interleaved run of bench/startup.py's commands (30 runs, medians of CPU time), kubectl 39 ms,
``ls --json`` 61 ms with the hand-written parser this replaced, 69 ms with h11 and 124 ms with
httpx, whose import pulls in urllib.request, http.cookiejar and email.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

import msgspec

from pulltrace import __version__
from pulltrace.errors import SourceError

if TYPE_CHECKING:
    import ssl


T = TypeVar("T")
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]

REQUEST_DEADLINE = 15.0
"""Seconds for one whole request, from connect to the last body byte."""
MAX_BODY = 64 * 1024 * 1024
"""Bytes of one answer after decompression: a listing of the collector's 20 000 pulls is about
30 MiB; more is a broken or hostile server, stopped before it costs memory."""
MAX_HEADERS = 64 * 1024
"""Bytes of a status line and headers (h11's default is 16 KiB; the API server's are larger)."""
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


class Client:
    """One-shot requests to one endpoint (GETs, and the history's small JSON writes), each
    within its own total deadline, over h11 (see the module's docstring for why not httpx
    here). One connection per request: ``Connection: close`` keeps the loop free of keep-alive
    state."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

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
        return self.request("GET", path, params, deadline=deadline, limit=limit)

    def send_json(
        self,
        method: Method,
        path: str,
        body: msgspec.Struct | None = None,
        *,
        deadline: float = REQUEST_DEADLINE,
        limit: int = MAX_BODY,
    ) -> Reply:
        """``method`` with ``body`` encoded as JSON (none for ``None``), bounded like ``get``:
        the history's writes (dismiss an update, create or assign a tag) are one small body
        each, and their answer is read within the same deadline and size."""
        data = b"" if body is None else msgspec.json.encode(body)
        return self.request(method, path, payload=data, deadline=deadline, limit=limit)

    def request(
        self,
        method: Method,
        path: str,
        params: dict[str, str] | None = None,
        *,
        payload: bytes | None = None,
        deadline: float = REQUEST_DEADLINE,
        limit: int = MAX_BODY,
    ) -> Reply:
        """One request and its whole answer within ``deadline`` seconds; ``payload`` (JSON) goes
        with a Content-Length, ``None`` sends none. Raises CollectorError only when no whole
        answer came."""
        import socket
        import urllib.parse

        import h11

        endpoint = self.endpoint
        url = urllib.parse.urlsplit(endpoint.url(path))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise CollectorError(f"not an http(s) URL: {_printable(endpoint.base_url)!r}")
        target = url.path or "/"
        query = "&".join(x for x in (url.query, urllib.parse.urlencode(params or {})) if x)
        if query:
            target += "?" + query
        ends = time.monotonic() + deadline

        def left() -> float:
            remaining = ends - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            return remaining

        try:
            port = url.port or (443 if url.scheme == "https" else 80)
            host = _host(url.hostname)
            sock = socket.create_connection((host, port), timeout=left())  # type: ignore[arg-type]
            with sock:
                if url.scheme == "https":
                    sock.settimeout(left())
                    sock = endpoint.ssl_context().wrap_socket(sock, server_hostname=url.hostname)
                conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADERS)
                headers = [("Host", url.netloc.rpartition("@")[2]), ("Connection", "close")]
                headers += endpoint.request_headers("application/json").items()
                if payload is not None:
                    headers += [
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(payload))),
                    ]
                request = h11.Request(method=method, target=target, headers=headers)
                parts: list[h11.Event] = [request]
                if payload:
                    parts.append(h11.Data(data=payload))
                for sent in (*parts, h11.EndOfMessage()):
                    sock.settimeout(left())
                    sock.sendall(conn.send(sent) or b"")
                status, content_type, cap = 0, "", limit
                body = bytearray()
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        sock.settimeout(left())
                        conn.receive_data(sock.recv(65536))
                    elif isinstance(event, h11.Response):
                        status = event.status_code
                        fields = {k.lower(): v for k, v in event.headers}
                        content_type = fields.get(b"content-type", b"").decode("latin-1")
                        cap = MAX_ERROR_BODY if status >= 400 else limit
                        declared = fields.get(b"content-length", b"")
                        if status < 400 and declared.isdigit() and int(declared) > cap:
                            raise CollectorError(too_large(endpoint, cap))
                    elif isinstance(event, h11.Data):
                        body += event.data
                        if len(body) > cap:
                            if status < 400:
                                raise CollectorError(too_large(endpoint, cap))
                            del body[cap:]  # enough of an error page to explain it
                            break
                    elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                        break
                return Reply(status, content_type, body)
        except TimeoutError:
            raise CollectorError(too_slow(endpoint, deadline)) from None
        except h11.RemoteProtocolError as err:
            raise CollectorError(unreadable(endpoint, cause(err))) from None
        except h11.LocalProtocolError:  # its message would quote the credentials
            raise CollectorError(
                f"cannot send a request to the collector at {endpoint.base_url}: a header "
                "(the token or the kubeconfig's credentials) has a character HTTP does not "
                "allow, such as a trailing newline"
            ) from None
        except (OSError, UnicodeError) as err:  # UnicodeError: a host name IDNA refuses
            raise CollectorError(unreachable(endpoint, cause(err))) from None

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


def _host(name: str) -> str | bytes:
    """An ASCII host name as the bytes it is: the socket module would encode a str with the
    IDNA codec, whose import costs ``ls`` about 1 ms and which leaves ASCII names as they are
    (or refuses them, as an empty label in ``a..b``, where the resolver says "not found")."""
    return name.encode("ascii") if name.isascii() else name


def cause(err: BaseException) -> str:
    """An exception's message as one escaped line (the protocol errors quote what came)."""
    text = str(err) or type(err).__name__
    return _printable(text.splitlines()[0] if text.strip() else type(err).__name__)
