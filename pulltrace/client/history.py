"""The collector's history, image updates and tags, read and changed over its REST API.

Synchronous and one request per call, over the bounded client in ``endpoint.py`` (its total
deadline, body-size caps and one-line ``CollectorError``s), so that ``pulltrace history``,
``stats`` and ``updates`` start no event loop and the TUI calls it from a worker thread. An
image in a path is percent-encoded whole (``/`` too): a reference has slashes, and the
collector's routes take the rest of the path as the image.
"""

from __future__ import annotations

import urllib.parse
from typing import TypeVar

import msgspec

from pulltrace.client.endpoint import (
    Client,
    CollectorError,
    Endpoint,
    Method,
    Reply,
    _ErrorBody,
    _printable,
    decode_json,
    explain_status,
    media_type,
    unreadable,
)
from pulltrace.model import HistoryList, HistoryStats, Tag, TagList, UpdateList

T = TypeVar("T")

HISTORY_PATH = "/api/v1/history"
STATS_PATH = "/api/v1/history/stats"
UPDATES_PATH = "/api/v1/updates"
TAGS_PATH = "/api/v1/tags"
NO_HISTORY = "the collector keeps no history: start it with --data-dir or --database"
"""What a user reads when the collector runs without a database (it answers 503)."""
_OFF = "history is off"
"""How the collector's own 503 sentence begins (``pulltrace.collector.history_api.OFF``);
other 503s (a database that failed, a proxy without endpoints) keep their own words."""


class _Acknowledge(msgspec.Struct):
    acknowledged: bool


class _NewTag(msgspec.Struct):
    name: str


class _Assign(msgspec.Struct, rename="camel"):
    tag_id: int | None


class HistoryClient:
    """One collector's history and update endpoints; each method is one bounded request."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._client = Client(endpoint)

    def history(
        self,
        *,
        image: str = "",
        node: str = "",
        phase: str = "",
        since: str = "",
        until: str = "",
        limit: int = 100,
        continue_: str = "",
    ) -> HistoryList:
        """One page, newest finished first; ``continue_`` is the previous page's token. Empty
        filters are left out of the query, as the collector reads an empty one as no filter."""
        params = {
            "image": image,
            "node": node,
            "phase": phase,
            "since": since,
            "until": until,
            "limit": str(limit),
            "continue": continue_,
        }
        return self._get(HISTORY_PATH, HistoryList, params)

    def stats(self, *, by: str = "image", since: str = "") -> HistoryStats:
        return self._get(STATS_PATH, HistoryStats, {"by": by, "since": since})

    def updates(self) -> UpdateList:
        return self._get(UPDATES_PATH, UpdateList)

    def dismiss(self, image: str) -> None:
        """Acknowledges ``image``'s update; an unknown image is the collector's 404 line."""
        self._send("PATCH", _update_path(image), _Acknowledge(acknowledged=True))

    def tags(self) -> TagList:
        return self._get(TAGS_PATH, TagList)

    def create_tag(self, name: str) -> Tag:
        """The new tag (201); a name already taken is the collector's 409 line."""
        reply = self._send("POST", TAGS_PATH, _NewTag(name=name), expect=201)
        return self._decode(reply, Tag)

    def set_tag(self, image: str, tag_id: int | None) -> None:
        """Puts ``image``'s update under tag ``tag_id``; ``None`` untags it."""
        self._send("PUT", _update_path(image) + "/tag", _Assign(tag_id=tag_id))

    # -- one request -------------------------------------------------------------------------

    def _get(self, path: str, kind: type[T], params: dict[str, str] | None = None) -> T:
        given = {k: v for k, v in (params or {}).items() if v}
        reply = self._client.get(path, given)
        self._check(reply, 200)
        return self._decode(reply, kind)

    def _send(self, method: Method, path: str, body: msgspec.Struct, *, expect: int = 204) -> Reply:
        reply = self._client.send_json(method, path, body)
        self._check(reply, expect)
        return reply

    def _check(self, reply: Reply, expect: int) -> None:
        if reply.status == expect:
            return
        if reply.status == 503 and _says_off(reply):
            raise CollectorError(NO_HISTORY)
        raise CollectorError(
            explain_status(self.endpoint, reply.status, reply.content_type, reply.body)
        )

    def _decode(self, reply: Reply, kind: type[T]) -> T:
        if media_type(reply.content_type) != "application/json":
            what = _printable(media_type(reply.content_type) or "no content type", 80)
            raise CollectorError(unreadable(self.endpoint, f"{what}, not JSON"))
        return decode_json(self.endpoint, reply.body, kind)


def _says_off(reply: Reply) -> bool:
    """Whether a 503 is the collector saying it runs without a history database."""
    if media_type(reply.content_type) != "application/json":
        return False
    try:
        reason = msgspec.json.decode(reply.body, type=_ErrorBody).error
    except (msgspec.MsgspecError, RecursionError):
        return False
    return reason.startswith(_OFF)


def _update_path(image: str) -> str:
    return f"{UPDATES_PATH}/{urllib.parse.quote(image, safe='')}"
