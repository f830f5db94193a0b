"""The history, update and tag endpoints, and the hook that feeds the history from the store.

``HistoryApi.open`` opens the configured database (or none), reloads the pulls that finished
within the live store's ``history_ttl`` into it, so that ``ls`` and ``watch`` show them again
after a restart, and subscribes the recorder to the store's events. Every query parameter and
body is bounded and checked before anything touches the database; the database calls run in
worker threads, never on the event loop.

The DIUN webhook is not behind the read token (DIUN sends its own ``Authorization`` value, the
webhook secret): ``create_app`` lets ``WEBHOOK_PATH`` past the token check.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pulltrace.collector.asgi import error_body
from pulltrace.collector.config import CollectorConfig
from pulltrace.collector.history import Cursor, HistoryBackend, HistoryQuery, Recorder
from pulltrace.collector.history.recorder import live_status
from pulltrace.model import (
    HISTORY_PAGE_MAX,
    IMAGE_MAX,
    AcknowledgeRequest,
    DiunNotification,
    HistoryList,
    HistoryStats,
    StatsBy,
    TagAssignment,
    TagList,
    TagRequest,
    UpdateList,
    encode,
)
from pulltrace.parse import ParseError, duration
from pulltrace.pullstore import PullStore

log = logging.getLogger("pulltrace.collector")

WEBHOOK_PATH = "/api/v1/webhooks/diun"
BODY_MAX = 64 << 10
"""Bytes in a webhook or API body: DIUN's notice is well under 2 KiB."""
RESTORE_MAX = 100_000
"""Finished pulls reloaded into the live store at start."""
HISTORY_PARAMS = ("image", "node", "phase", "since", "until", "limit", "continue")
STATS_PARAMS = ("by", "since")
STATS_BY: tuple[StatsBy, ...] = ("image", "node", "repository")
TEXT_MAX = {"image": IMAGE_MAX, "node": 253, "continue": 512, "since": 64, "until": 64}
DEFAULT_LIMIT = 100
OFF = "history is off: start the collector with --data-dir or --database"

T = TypeVar("T")


class _BadRequest(Exception):
    """A 4xx answer, raised while checking a request and turned into its JSON body once."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HistoryApi:
    def __init__(
        self,
        backend: HistoryBackend | None,
        config: CollectorConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.config = config
        self._clock = clock
        self.scratch: str | None = None
        """A demo's temporary data directory, removed at stop."""
        self.recorder = (
            Recorder(
                backend,
                retention=config.history_retention,
                max_rows=config.history_max_pulls,
                flush_interval=config.history_flush_interval,
                clock=clock,
            )
            if backend is not None
            else None
        )

    @classmethod
    def open(
        cls, config: CollectorConfig, store: PullStore, *, clock: Callable[[], float] = time.time
    ) -> HistoryApi:
        """Raises ``HistoryError`` when the configured database cannot be used: a collector
        told to keep history must not silently run without it."""
        backend = None
        data_dir = config.data_dir
        scratch = None
        if config.demo_history_seed is not None and not (data_dir or config.database):
            data_dir = scratch = tempfile.mkdtemp(prefix="pulltrace-demo-")
        if data_dir or config.database:
            from pulltrace.collector.history import open_backend

            backend = open_backend(data_dir, config.database)
        if backend is not None and config.demo_history_seed is not None:
            from pulltrace.collector.history.demo import seed_history
            from pulltrace.sim import SimCluster

            seed = config.demo_history_seed
            nodes = [node.name for node in SimCluster(seed).nodes]
            seed_history(backend, seed, nodes, clock())
        api = cls(backend, config, clock=clock)
        api.scratch = scratch
        if backend is not None and api.recorder is not None:
            since = clock() - store.history_ttl
            restored = store.restore(live_status(p) for p in backend.recent(since, RESTORE_MAX))
            log.info(
                "history open",
                extra={"backend": backend.kind, "restoredPulls": restored},
            )
            store.add_listener(api.recorder.on_event)
        return api

    def start(self) -> None:
        if self.recorder is not None:
            self.recorder.start()

    async def stop(self) -> None:
        if self.recorder is not None:
            await asyncio.to_thread(self.recorder.close)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    @property
    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/history", self._guard(self.history), methods=["GET"]),
            Route("/api/v1/history/stats", self._guard(self.stats), methods=["GET"]),
            Route(WEBHOOK_PATH, self._guard(self.webhook), methods=["POST"]),
            Route("/api/v1/updates", self._guard(self.updates), methods=["GET"]),
            Route("/api/v1/updates/{image:path}/tag", self._guard(self.tag), methods=["PUT"]),
            Route("/api/v1/updates/{image:path}", self._guard(self.acknowledge), methods=["PATCH"]),
            Route("/api/v1/tags", self._guard(self.list_tags), methods=["GET"]),
            Route("/api/v1/tags", self._guard(self.create_tag), methods=["POST"]),
            Route("/api/v1/tags/{id}", self._guard(self.delete_tag), methods=["DELETE"]),
        ]

    def _guard(
        self, handler: Callable[[Request, HistoryBackend], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if self.backend is None:
                return _error(503, OFF)
            try:
                return await handler(request, self.backend)
            except _BadRequest as err:
                return _error(err.status, str(err))

        endpoint.__name__ = handler.__name__
        return endpoint

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """A database call in a worker thread; its failure is a 503, logged once."""
        try:
            return await asyncio.to_thread(fn, *args)
        except Exception:
            log.exception("history database call failed", extra={"call": fn.__name__})
            raise _BadRequest(503, "the history database is not available") from None

    # -- history ---------------------------------------------------------------------------

    async def history(self, request: Request, db: HistoryBackend) -> Response:
        params = _params(request, HISTORY_PARAMS)
        phase = params.get("phase")
        if phase not in (None, "completed", "failed"):
            raise _BadRequest(400, f"phase must be completed or failed, not {phase!r}")
        limit = _int(params.get("limit"), "limit", 1, HISTORY_PAGE_MAX, DEFAULT_LIMIT)
        token = params.get("continue")
        try:
            after = Cursor.decode(token) if token else None
        except ValueError as err:
            raise _BadRequest(400, f"continue: {err}") from None
        now = self._clock()
        query = HistoryQuery(
            image=params.get("image"),
            node=params.get("node"),
            phase=phase,  # type: ignore[arg-type]
            since=_moment(params.get("since"), "since", now),
            until=_moment(params.get("until"), "until", now),
            limit=limit,
            after=after,
        )
        pulls, cursor = await self._call(db.query, query)
        page = HistoryList(pulls=pulls, continue_=cursor.encode() if cursor else None)
        return _json(encode(page))

    async def stats(self, request: Request, db: HistoryBackend) -> Response:
        params = _params(request, STATS_PARAMS)
        by = params.get("by", "image")
        if by not in STATS_BY:
            raise _BadRequest(400, f"by must be one of {', '.join(STATS_BY)}, not {by[:32]!r}")
        since = _moment(params.get("since"), "since", self._clock())
        groups = await self._call(db.stats, by, since)
        moment = datetime.fromtimestamp(since, UTC) if since is not None else None
        return _json(encode(HistoryStats(by=by, since=moment, groups=groups)))

    # -- DIUN --------------------------------------------------------------------------------

    async def webhook(self, request: Request, db: HistoryBackend) -> Response:
        secret = self.config.webhook_secret
        if secret:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), secret.encode()):
                return _error(401, "the Authorization header does not match the webhook secret")
        notice = _decode(await _body(request), DiunNotification)
        _check_text(notice.image, "image")
        await self._call(db.upsert_update, notice, self._clock())
        return Response(status_code=204)

    async def updates(self, request: Request, db: HistoryBackend) -> Response:
        _params(request, ())
        return _json(encode(UpdateList(updates=await self._call(db.updates))))

    async def acknowledge(self, request: Request, db: HistoryBackend) -> Response:
        image = _image(request)
        body = _decode(await _body(request), AcknowledgeRequest)
        if not await self._call(db.acknowledge, image, body.acknowledged):
            raise _BadRequest(404, f"no update for image {image!r}")
        return Response(status_code=204)

    async def tag(self, request: Request, db: HistoryBackend) -> Response:
        image = _image(request)
        body = _decode(await _body(request), TagAssignment)
        result = await self._call(db.set_tag, image, body.tag_id)
        if result == "no-image":
            raise _BadRequest(404, f"no update for image {image!r}")
        if result == "no-tag":
            raise _BadRequest(404, f"no tag with id {body.tag_id}")
        return Response(status_code=204)

    async def list_tags(self, request: Request, db: HistoryBackend) -> Response:
        _params(request, ())
        return _json(encode(TagList(tags=await self._call(db.tags))))

    async def create_tag(self, request: Request, db: HistoryBackend) -> Response:
        body = _decode(await _body(request), TagRequest)
        name = body.name.strip()
        _check_text(name, "name")
        if not name:
            raise _BadRequest(400, "name must not be blank")
        tag = await self._call(db.create_tag, name)
        if tag is None:
            raise _BadRequest(409, f"a tag named {name!r} exists")
        return _json(encode(tag), 201)

    async def delete_tag(self, request: Request, db: HistoryBackend) -> Response:
        raw = request.path_params["id"]
        tag_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 16 else 0
        if not tag_id or not await self._call(db.delete_tag, tag_id):
            raise _BadRequest(404, f"no tag with id {raw[:32]!r}")
        return Response(status_code=204)


# -- checking requests ------------------------------------------------------------------------


def _params(request: Request, known: tuple[str, ...]) -> dict[str, str]:
    """The query parameters, each known, given once, bounded and printable; an empty value is
    no filter, as with kubectl's flags. Only one more than the known ones is looked at: it is
    unknown or a repeat, and thousands of them cost no more."""
    items = request.query_params.multi_items()
    params: dict[str, str] = {}
    for name, value in items[: len(known) + 1]:
        if name not in known:
            allowed = ", ".join(known) or "none"
            raise _BadRequest(400, f"unknown query parameter {name[:64]!r} (allowed: {allowed})")
        if name in params:
            raise _BadRequest(400, f"query parameter {name!r} given twice")
        if len(value) > TEXT_MAX.get(name, 64):
            raise _BadRequest(400, f"{name} is too long (at most {TEXT_MAX.get(name, 64)})")
        _check_text(value, name)
        if value:
            params[name] = value
    return params


def _check_text(value: str, what: str) -> None:
    if any(unicodedata.category(c)[0] == "C" for c in value):
        raise _BadRequest(400, f"{what} contains control characters")


def _int(text: str | None, what: str, low: int, high: int, default: int) -> int:
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not low <= int(text) <= high:
        raise _BadRequest(400, f"{what} must be a whole number from {low} to {high}")
    return int(text)


def _moment(text: str | None, what: str, now: float) -> float | None:
    """An RFC 3339 time, or a duration back from now (``24h``, ``7d``)."""
    if text is None:
        return None
    stripped = text.strip()
    if stripped[:-1].isdigit() and stripped.endswith("d") and len(stripped) <= 6:
        return now - int(stripped[:-1]) * 86400.0
    try:
        return now - duration(stripped)
    except ParseError:
        pass
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        raise _BadRequest(
            400, f"{what} must be a duration (24h, 7d) or an RFC 3339 time, not {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _image(request: Request) -> str:
    image: str = request.path_params["image"]
    if not image or len(image) > IMAGE_MAX:
        raise _BadRequest(404, "no such image")
    _check_text(image, "image")
    return image


async def _body(request: Request) -> bytes:
    """At most ``BODY_MAX`` bytes, refused by its declared length before any is read."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > BODY_MAX):
        raise _BadRequest(413, f"the body is larger than {BODY_MAX} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_MAX:
            raise _BadRequest(413, f"the body is larger than {BODY_MAX} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as err:
        raise _BadRequest(400, f"invalid body: {err}") from None
    except msgspec.DecodeError:
        raise _BadRequest(400, "the body is not valid JSON") from None


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return Response(error_body(message), status_code=status, media_type="application/json")
