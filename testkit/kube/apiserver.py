"""A Kubernetes API server double speaking the real list and watch wire format over HTTP.

No API server can run here, and mocking the ``kubernetes`` client would test our idea of it
rather than what it does. So this is a real HTTP server on loopback, and the official client
talks to it exactly as it would to kube-apiserver:

- ``GET /api/v1/{pods,events}`` and ``/api/v1/namespaces/{ns}/{pods,events}`` return a
  ``PodList``/``EventList`` with ``metadata.resourceVersion``; items carry no kind/apiVersion,
  as in real lists. ``fieldSelector`` supports the fields the real server does (an unknown
  field is a 400), including the ADDED/DELETED a selector turns a MODIFIED into.
- ``?limit=N`` pages a list as etcd does: a page has ``metadata.continue`` (an opaque token
  naming the snapshot's version and where to go on) and, without selectors,
  ``remainingItemCount``; every page of one list is cut from the first page's snapshot and
  carries its ``resourceVersion``. A token whose version has been compacted away gets what the
  real server answers: HTTP 410 with a ``Status`` of reason ``Expired``.
- ``?watch=true&resourceVersion=N`` streams newline-delimited ``{"type", "object"}`` events with
  chunked encoding: every change after N, then live ones, until ``timeoutSeconds``. A version
  older than the retained history gets what the watch cache sends: HTTP 200 and one ERROR event
  carrying a ``Status`` with code 410, reason ``Expired``, "too old resource version: N (M)".
  Bookmarks go only to watches that asked for them (``allowWatchBookmarks``).
- Every change bumps one global resourceVersion, like etcd's revision.

Tests drive it with ``add``/``modify``/``delete``, ``compact`` (the next watch from an older
version, or list continued from one, gets 410), ``drop_watches`` (connections die
mid-stream), ``outage`` (503 for a while), ``bookmark`` and ``before_page`` (a hook between
the pages of a list). More routes can be added with ``route``; handlers get a ``Request`` that can
answer JSON, Status objects or a chunked stream.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import json
import queue
import re
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

Obj = dict[str, Any]
Handler = Callable[["Request"], None]


def _get(obj: Obj, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def _meta_fields(obj: Obj) -> dict[str, str]:
    return {
        "metadata.name": _get(obj, "metadata.name"),
        "metadata.namespace": _get(obj, "metadata.namespace"),
    }


def _pod_fields(obj: Obj) -> dict[str, str]:
    """pkg/registry/core/pod/strategy.go ToSelectableFields (the common ones)."""
    paths = (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    )
    return {**_meta_fields(obj), **{p: _get(obj, p) for p in paths}}


def _event_fields(obj: Obj) -> dict[str, str]:
    """pkg/registry/core/event/strategy.go ToSelectableFields."""
    involved = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    fields = {f"involvedObject.{k}": _get(obj, f"involvedObject.{k}") for k in involved}
    fields["reason"] = _get(obj, "reason")
    fields["reportingComponent"] = _get(obj, "reportingComponent")
    fields["source"] = _get(obj, "source.component") or _get(obj, "reportingComponent")
    fields["type"] = _get(obj, "type")
    return {**_meta_fields(obj), **fields}


@dataclass(frozen=True)
class Kind:
    resource: str
    kind: str
    selectable: Callable[[Obj], dict[str, str]]


KINDS: dict[str, Kind] = {
    "pods": Kind("pods", "Pod", _pod_fields),
    "events": Kind("events", "Event", _event_fields),
}
_BY_KIND = {k.kind: k for k in KINDS.values()}


class BadRequest(Exception):
    pass


@dataclass(frozen=True)
class Selector:
    terms: tuple[tuple[str, bool, str], ...] = ()
    """(field, wants equal, value)."""

    @classmethod
    def parse(cls, kind: Kind, text: str) -> Selector:
        terms = []
        known = kind.selectable({})
        for term in filter(None, text.split(",")):
            m = re.fullmatch(r"([^=!]+)(==|=|!=)(.*)", term)
            if m is None:
                raise BadRequest(f"invalid field selector: {term!r}")
            name, op, value = m.groups()
            if name not in known:
                raise BadRequest(f"field label not supported: {name}")
            terms.append((name, op != "!=", value))
        return cls(tuple(terms))

    def matches(self, kind: Kind, obj: Obj) -> bool:
        if not self.terms:
            return True
        fields = kind.selectable(obj)
        return all((fields[name] == value) == equal for name, equal, value in self.terms)


def _label_terms(text: str) -> dict[str, str]:
    """Equality label selectors (``app=web,tier=front``), which is all lists here need."""
    terms = {}
    for term in filter(None, text.split(",")):
        m = re.fullmatch(r"([^=!]+)==?(.*)", term)
        if m is None:
            raise BadRequest(f"unsupported label selector: {term!r}")
        terms[m.group(1)] = m.group(2)
    return terms


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]

    @property
    def watch(self) -> bool:
        return self.query.get("watch") in ("true", "1")


@dataclass
class _Change:
    rv: int
    kind: Kind
    type: str
    obj: Obj
    old: Obj | None


_DROP = object()


@dataclass(eq=False)
class _Watcher:
    kind: Kind
    namespace: str | None
    selector: Selector
    bookmarks: bool
    queue: queue.Queue[object] = field(default_factory=queue.Queue)

    def event_for(self, change: _Change) -> Obj | None:
        """The event this watch sees, if any: a selector turns MODIFIED into ADDED or DELETED
        when the object enters or leaves it."""
        if change.kind is not self.kind:
            return None
        ns = change.obj.get("metadata", {}).get("namespace")
        if self.namespace is not None and ns != self.namespace:
            return None
        now = self.selector.matches(self.kind, change.obj)
        before = change.old is not None and self.selector.matches(self.kind, change.old)
        kind = change.type
        if kind == "MODIFIED":
            kind = {(True, True): "MODIFIED", (True, False): "ADDED", (False, True): "DELETED"}.get(
                (now, before), ""
            )
        elif not now:
            kind = ""
        return {"type": kind, "object": change.obj} if kind else None


class Request:
    """One HTTP request, for route handlers."""

    def __init__(self, handler: BaseHTTPRequestHandler, params: dict[str, str]) -> None:
        self.handler = handler
        url = urlsplit(handler.path)
        self.method = handler.command
        self.path = url.path
        self.query = dict(parse_qsl(url.query, keep_blank_values=True))
        self.params = params
        self.headers = handler.headers
        length = int(handler.headers.get("Content-Length") or 0)
        self.body = handler.rfile.read(length) if length else b""

    def send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        h = self.handler
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)

    def json(self, status: int, obj: object) -> None:
        self.send(status, json.dumps(obj).encode())

    def status(self, code: int, reason: str, message: str) -> None:
        self.json(code, status_object(code, reason, message))

    def start_stream(self, content_type: str = "application/json") -> None:
        h = self.handler
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Cache-Control", "no-cache, private")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

    def write_chunk(self, data: bytes) -> None:
        self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.handler.wfile.flush()

    def end_stream(self) -> None:
        self.handler.wfile.write(b"0\r\n\r\n")
        self.handler.wfile.flush()

    def abort(self) -> None:
        """Kills the connection mid-response, as a crashing server or a broken network
        would."""
        self.handler.close_connection = True
        with contextlib.suppress(OSError):
            self.handler.connection.shutdown(socket.SHUT_RDWR)

    def client_gone(self) -> bool:
        sock: socket.socket = self.handler.connection
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        try:
            peeked: bytes = sock.recv(1, socket.MSG_PEEK)
        except OSError:
            return True
        return peeked == b""


def status_object(code: int, reason: str, message: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    api: ApiServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up mid-stream are normal here; say nothing."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        self.server.api.dispatch(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class ApiServer:
    def __init__(self, token: str | None = None, first_resource_version: int = 1000) -> None:
        self.token = token
        self._cond = threading.Condition()
        self._rv = first_resource_version
        self._floor = first_resource_version
        self._objects: dict[tuple[str, str, str], Obj] = {}
        self._history: list[_Change] = []
        self._watchers: set[_Watcher] = set()
        self._down = False
        self._requests: list[RequestRecord] = []
        self.watches_opened = 0
        self.before_page: Callable[[RequestRecord], None] | None = None
        """Called before a list page that continues another is served, from the request's
        thread: a test can change the cluster, or compact, between two pages."""
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.route("GET", r"/api/v1/(?P<resource>pods|events)", self._collection)
        self.route(
            "GET",
            r"/api/v1/namespaces/(?P<namespace>[^/]+)/(?P<resource>pods|events)",
            self._collection,
        )
        self.route(
            "GET",
            r"/api/v1/namespaces/(?P<namespace>[^/]+)/(?P<resource>pods|events)/(?P<name>[^/]+)",
            self._get_one,
        )
        self._server = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._server.api = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ApiServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.drop_watches()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def kubeconfig(self, path: Path, *, context: str = "double", namespace: str = "") -> Path:
        """A kubeconfig pointing at this server: plain http, a bearer token if it wants one."""
        user: Obj = {"token": self.token} if self.token else {}
        ctx: Obj = {"cluster": "double", "user": "tester"}
        if namespace:
            ctx["namespace"] = namespace
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "double", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": user}],
            "contexts": [{"name": context, "context": ctx}],
            "current-context": context,
            "preferences": {},
        }
        path.write_text(json.dumps(doc, indent=2))
        return path

    # -- routes ----------------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Adds an endpoint; ``pattern`` must match the whole path, its named groups become
        ``request.params``. Later routes do not shadow earlier ones."""
        self._routes.append((method, re.compile(pattern), handler))

    def dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        record = RequestRecord(handler.command, url.path, dict(parse_qsl(url.query)))
        with self._cond:
            self._requests.append(record)
            self._cond.notify_all()
            down = self._down
        if self.token and not self._authorized(handler.headers.get("Authorization", "")):
            # authentication comes before routing: a bad token never learns what exists
            Request(handler, {}).status(401, "Unauthorized", "Unauthorized")
            return
        for method, pattern, fn in self._routes:
            m = pattern.fullmatch(url.path)
            if m is None or method != handler.command:
                continue
            request = Request(handler, {k: v for k, v in m.groupdict().items() if v is not None})
            if down:
                request.status(
                    503,
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request",
                )
            else:
                try:
                    fn(request)
                except BadRequest as exc:
                    request.status(400, "BadRequest", str(exc))
            return
        Request(handler, {}).status(
            404, "NotFound", "the server could not find the requested resource"
        )

    def _authorized(self, header: str) -> bool:
        """As kube-apiserver's bearer token authenticator reads the header: the scheme in any
        case (in-cluster clients send ``bearer``), then the token."""
        parts = header.split(" ", 2)
        return len(parts) >= 2 and parts[0].lower() == "bearer" and parts[1] == self.token

    @property
    def requests(self) -> list[RequestRecord]:
        with self._cond:
            return list(self._requests)

    def lists(self, resource: str) -> list[RequestRecord]:
        """List (not watch) requests for a resource, in any scope."""
        return [r for r in self.requests if r.path.endswith(f"/{resource}") and not r.watch]

    def watches(self, resource: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.path.endswith(f"/{resource}") and r.watch]

    # -- objects ---------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    def add(self, obj: Obj) -> Obj:
        return self._change("ADDED", obj)

    def modify(self, obj: Obj) -> Obj:
        return self._change("MODIFIED", obj)

    def delete(self, obj: Obj) -> Obj:
        return self._change("DELETED", obj)

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        with self._cond:
            found = self._objects.get((_BY_KIND[kind].resource, namespace, name))
            return copy.deepcopy(found) if found else None

    def _change(self, type_: str, obj: Obj) -> Obj:
        kind = _BY_KIND[obj["kind"]]
        meta = obj["metadata"]
        key = (kind.resource, meta.get("namespace", ""), meta["name"])
        with self._cond:
            old = self._objects.get(key)
            if (type_ == "ADDED") != (old is None):
                raise KeyError(f"{type_} {key}: {'exists' if old else 'not found'}")
            self._rv += 1
            stored = copy.deepcopy(obj)
            stored["apiVersion"] = "v1"
            stored_meta = stored["metadata"]
            stored_meta["resourceVersion"] = str(self._rv)
            stored_meta.setdefault(
                "uid", (old or {}).get("metadata", {}).get("uid") or str(uuid.uuid4())
            )
            stored_meta.setdefault(
                "creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            )
            if type_ == "DELETED":
                del self._objects[key]
            else:
                self._objects[key] = stored
            change = _Change(self._rv, kind, type_, stored, old)
            self._history.append(change)
            for watcher in self._watchers:
                event = watcher.event_for(change)
                if event is not None:
                    watcher.queue.put(_line(event))
            return copy.deepcopy(stored)

    # -- failure injection -----------------------------------------------------------------

    def compact(self) -> int:
        """Forgets the change history, as etcd compaction does: a watch from any version before
        now gets 410 Gone. Returns the oldest version still watchable."""
        with self._cond:
            self._history.clear()
            self._floor = self._rv
            return self._floor

    def drop_watches(self) -> int:
        """Cuts every open watch connection mid-stream; returns how many there were."""
        with self._cond:
            for watcher in self._watchers:
                watcher.queue.put(_DROP)
            return len(self._watchers)

    def bookmark(self) -> None:
        """Sends the current version to every watch that allows bookmarks."""
        with self._cond:
            for watcher in self._watchers:
                if watcher.bookmarks:
                    obj = {
                        "kind": watcher.kind.kind,
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(self._rv)},
                    }
                    watcher.queue.put(_line({"type": "BOOKMARK", "object": obj}))

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """Open watches die and every request gets 503 until the block ends."""
        with self._cond:
            self._down = True
        self.drop_watches()
        try:
            yield
        finally:
            with self._cond:
                self._down = False

    def open_watches(self, resource: str | None = None) -> int:
        with self._cond:
            return sum(1 for w in self._watchers if resource in (None, w.kind.resource))

    def wait_for(self, check: Callable[[], object], what: str, timeout: float = 10.0) -> None:
        """Blocks until ``check()`` holds, re-checking whenever a request arrives or a watch
        opens or closes; ``check`` may call this server's methods."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(check()), timeout):
                raise TimeoutError(f"timed out waiting for {what}")

    # -- handlers --------------------------------------------------------------------------

    def _collection(self, request: Request) -> None:
        kind = KINDS[request.params["resource"]]
        namespace = request.params.get("namespace")
        selector = Selector.parse(kind, request.query.get("fieldSelector", ""))
        labels = _label_terms(request.query.get("labelSelector", ""))
        if request.query.get("watch") in ("true", "1"):
            self._watch(request, kind, namespace, selector)
            return
        limit, token = _page_request(request.query)
        if token is not None and self.before_page is not None:
            self.before_page(RequestRecord(request.method, request.path, request.query))
        with self._cond:
            rv = self._rv if token is None else token[0]
            if rv < self._floor:
                request.status(410, "Expired", CONTINUE_EXPIRED)
                return
            listed = [
                ((ns, name), obj)
                for (resource, ns, name), obj in sorted(self._snapshot(rv).items())
                if resource == kind.resource
                and namespace in (None, ns)
                and (token is None or (ns, name) > token[1])
                and selector.matches(kind, obj)
                and labels.items() <= (obj["metadata"].get("labels") or {}).items()
            ]
        page = listed[:limit] if limit else listed
        metadata: Obj = {"resourceVersion": str(rv)}
        if len(page) < len(listed):
            metadata["continue"] = _continue_token(rv, page[-1][0])
            if not selector.terms and not labels:
                # etcd3's store counts what is left only when it need not filter
                metadata["remainingItemCount"] = len(listed) - len(page)
        request.json(
            200,
            {
                "kind": f"{kind.kind}List",
                "apiVersion": "v1",
                "metadata": metadata,
                "items": [
                    {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
                    for _, obj in page
                ],
            },
        )

    def _snapshot(self, rv: int) -> dict[tuple[str, str, str], Obj]:
        """The objects as they were at ``rv`` (not compacted away): today's, with the changes
        since undone, newest first."""
        objects = dict(self._objects)
        for change in reversed(self._history):
            if change.rv <= rv:
                break
            meta = change.obj["metadata"]
            key = (change.kind.resource, meta.get("namespace", ""), meta["name"])
            if change.old is None:
                del objects[key]
            else:
                objects[key] = change.old
        return objects

    def _get_one(self, request: Request) -> None:
        kind = KINDS[request.params["resource"]]
        found = self.get(kind.kind, request.params["namespace"], request.params["name"])
        if found is None:
            name = request.params["name"]
            request.status(404, "NotFound", f'{kind.resource} "{name}" not found')
        else:
            request.json(200, found)

    def _watch(
        self, request: Request, kind: Kind, namespace: str | None, selector: Selector
    ) -> None:
        raw_rv = request.query.get("resourceVersion", "")
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        watcher = _Watcher(
            kind, namespace, selector, request.query.get("allowWatchBookmarks") == "true"
        )
        with self._cond:
            if raw_rv in ("", "0"):
                backlog = [
                    _line({"type": "ADDED", "object": obj})
                    for (resource, ns, _), obj in sorted(self._objects.items())
                    if resource == kind.resource
                    and namespace in (None, ns)
                    and selector.matches(kind, obj)
                ]
            else:
                if not raw_rv.isdigit():
                    raise BadRequest(f'resourceVersion: Invalid value: "{raw_rv}"')
                rv = int(raw_rv)
                if rv < self._floor:
                    expired = status_object(
                        410, "Expired", f"too old resource version: {rv} ({self._floor})"
                    )
                    request.start_stream()
                    request.write_chunk(_line({"type": "ERROR", "object": expired}))
                    request.end_stream()
                    return
                backlog = [
                    _line(event)
                    for change in self._history
                    if change.rv > rv and (event := watcher.event_for(change)) is not None
                ]
            self._watchers.add(watcher)
            self.watches_opened += 1
            self._cond.notify_all()
        try:
            request.start_stream()
            for line in backlog:
                request.write_chunk(line)
            self._stream(request, watcher, timeout)
        except OSError:
            pass  # the client went away
        finally:
            with self._cond:
                self._watchers.discard(watcher)
                self._cond.notify_all()

    def _stream(self, request: Request, watcher: _Watcher, timeout: float) -> None:
        """Live events until the watch's timeout; a client that hung up is noticed within a
        fraction of a second so that ``open_watches`` stays true."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = watcher.queue.get(timeout=min(left, 0.2))
            except queue.Empty:
                if request.client_gone():
                    return
                continue
            if item is _DROP:
                request.abort()
                return
            assert isinstance(item, bytes)
            request.write_chunk(item)
        request.end_stream()


CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can"
    " start a new list without the continue parameter, or use the continue token in this"
    " response to retrieve the remainder of the results. Continuing with the provided token"
    " results in an inconsistent list - objects that were created, modified, or deleted between"
    " the time the first chunk was returned and now may show up in the list."
)
"""What kube-apiserver answers (with HTTP 410) to a continue token that etcd has compacted."""


def _page_request(query: dict[str, str]) -> tuple[int, tuple[int, tuple[str, str]] | None]:
    """``limit`` (0: everything) and the decoded ``continue`` token, as the real server checks
    them."""
    raw_limit = query.get("limit") or "0"
    if not raw_limit.isdigit():
        raise BadRequest(f'limit: Invalid value: "{raw_limit}"')
    raw = query.get("continue") or ""
    if not raw:
        return int(raw_limit), None
    if query.get("resourceVersion"):
        raise BadRequest("specifying resource version is not allowed when using continue")
    try:
        doc = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        rv = doc["rv"]
        ns, _, name = doc["start"].removesuffix("\x00").partition("/")
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadRequest(f"continue key is not valid: {exc}") from None
    if doc.get("v") != "meta.k8s.io/v1" or not isinstance(rv, int) or rv <= 0:
        raise BadRequest("continue key is not valid: incorrect encoded start resourceVersion")
    return int(raw_limit), (rv, (ns, name))


def _continue_token(rv: int, last: tuple[str, str]) -> str:
    """apiserver's storage encoding: unpadded URL-safe base64 of the version and the key just
    after the last one sent."""
    doc = {"v": "meta.k8s.io/v1", "rv": rv, "start": f"{last[0]}/{last[1]}\x00"}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def _line(event: Obj) -> bytes:
    return json.dumps(event).encode() + b"\n"
