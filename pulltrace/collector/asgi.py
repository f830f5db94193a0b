"""Raw ASGI replies and bearer-token checks, shared by the endpoints that bypass Starlette's
request objects for speed (the report ingest and the event stream), and the nodes whose agents
the token check turns away."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import msgspec
from starlette.types import Scope, Send

from pulltrace.model import NodeState, NodeStatus
from pulltrace.pullstore import NodeChange, NodeListener

Headers = Iterable[tuple[bytes, bytes]]
JSON = (b"content-type", b"application/json")
CHALLENGE = ((b"www-authenticate", b"Bearer"),)


def error_body(message: str) -> bytes:
    return msgspec.json.encode({"error": message})


async def send_bytes(send: Send, status: int, body: bytes, headers: Headers = ()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON, (b"content-length", b"%d" % len(body)), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, status: int, message: str, headers: Headers = ()) -> None:
    await send_bytes(send, status, error_body(message), headers)


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class BearerToken:
    """Compares digests of the tokens, so the comparison takes the same time whatever the
    given token's length or content."""

    __slots__ = ("_digest",)

    def __init__(self, token: str) -> None:
        self._digest = hashlib.sha256(token.encode()).digest()

    def problem(self, scope: Scope) -> str | None:
        """Why the request is not authorised, or None when it is."""
        value = header(scope, b"authorization")
        scheme, _, given = (value or b"").partition(b" ")
        if value is None or scheme.lower() != b"bearer":
            return "this endpoint needs an Authorization: Bearer token"
        if not hmac.compare_digest(hashlib.sha256(given.strip()).digest(), self._digest):
            return "the bearer token is not valid"
        return None


NODE_HEADER = b"pulltrace-node"
"""The node an agent reports for, sent beside the body so that a report refused for its token
can be put down to its node without reading the body."""
REFUSED_MAX = 256
"""Node names remembered with a refused token; the least recently refused are forgotten."""
REFUSED_TTL = 600.0
"""Seconds a refusal is remembered without another: the agent retries at least every 30 s."""
_NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class RefusedNodes:
    """Nodes whose agent the collector turns away for its token, so that such a node shows as
    ``unauthorized`` rather than going quietly ``stale`` or not showing at all.

    The names are only claimed (the token that would vouch for them is wrong), so they are
    bounded (``REFUSED_MAX``, least recently refused forgotten first), create nothing in the
    store, and never override a node whose agent is getting through: only a node the store
    does not know, or knows as ``stale``, is shown unauthorized. A report the store accepts
    from the node ends it."""

    def __init__(self, nodes: Callable[[], list[NodeStatus]], clock: Callable[[], float]) -> None:
        self._store_nodes = nodes
        self._clock = clock
        self._refused: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._listeners: list[NodeListener] = []

    def add_listener(self, fn: NodeListener) -> None:
        self._listeners.append(fn)

    def record(self, scope: Scope, problem: str) -> None:
        """A report refused for its token: remembered under the node it names, if any."""
        claimed = header(scope, NODE_HEADER)
        if claimed is None or not _NODE_NAME.fullmatch(claimed.decode("latin-1")):
            return
        name = claimed.decode("ascii")
        reason = f"the collector refuses its agent's token: {problem}"
        before = self._refused.get(name)
        self._refused[name] = (self._clock(), reason)
        self._refused.move_to_end(name)
        while len(self._refused) > REFUSED_MAX:
            self._refused.popitem(last=False)
        if before is None or before[1] != reason:
            known = {n.node_name: n for n in self._store_nodes()}
            status = self._status(name, known.get(name))
            if status is not None and status.state == "unauthorized":
                self._emit(status, known[name].state if name in known else None)

    def on_node(self, change: NodeChange) -> None:
        """A store node listener: an agent that gets through ends its node's refusal, and a
        refused node the store now calls stale is announced unauthorized instead."""
        name = change.status.node_name
        if name not in self._refused:
            return
        if change.kind == "node.removed" or change.status.state != "stale":
            del self._refused[name]
            return
        status = self._status(name, change.status)
        if status is not None:
            self._emit(status, change.status.state)

    def nodes(self) -> list[NodeStatus]:
        """The store's nodes, with the refused ones among them."""
        self._expire()
        statuses = self._store_nodes()
        if not self._refused:
            return statuses
        known = {n.node_name: n for n in statuses}
        for name in self._refused:
            status = self._status(name, known.get(name))
            if status is not None:
                known[name] = status
        return [known[name] for name in sorted(known)]

    def _status(self, name: str, stored: NodeStatus | None) -> NodeStatus | None:
        """How a refused node shows: unauthorized, unless its agent gets through."""
        if stored is not None and stored.state != "stale":
            return stored
        at, reason = self._refused[name]
        seen = datetime.fromtimestamp(at, UTC)
        if stored is None:
            return NodeStatus(node_name=name, state="unauthorized", error=reason, last_seen=seen)
        return msgspec.structs.replace(stored, state="unauthorized", error=reason, last_seen=seen)

    def _expire(self) -> None:
        horizon = self._clock() - REFUSED_TTL
        while self._refused:
            name, (at, _) = next(iter(self._refused.items()))
            if at >= horizon:
                return
            del self._refused[name]

    def _emit(self, status: NodeStatus, before: NodeState | None) -> None:
        change = NodeChange("node.changed", status, before)
        for fn in self._listeners:
            fn(change)
