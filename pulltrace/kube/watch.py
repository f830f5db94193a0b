"""List-then-watch for one resource in one scope, in a daemon thread.

The loop is client-go's reflector, reduced: list to get the state and a resourceVersion, in
pages (as client-go's pager does) so that a large cluster's list is never one document in
memory at once; watch from that version (asking for bookmarks, so that a quiet watch still
moves its version forward and survives etcd compaction); resume a broken watch from the last
version seen; relist only when the API server answers 410 Gone, because the version has been
compacted away.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Generic, TypeVar

log = logging.getLogger("pulltrace.kube")

CONNECT_TIMEOUT = 10.0
LIST_READ_TIMEOUT = 60.0
PAGE_SIZE = 500
"""Objects per list page, client-go's default. Listing 5 000 pods (about 44 MiB of JSON) and
10 000 Events in one piece each raised the collector's RSS by about 290 MiB for good; in pages
of 500, each digested as it came, by about 50 (bench/collector_memory.py)."""
WATCH_SECONDS = (300, 600)
"""The API server ends each watch after a while; like client-go, spread the ends out."""


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0


DEFAULT_BACKOFF = Backoff()


@functools.cache
def _raw_watch_class() -> Any:
    from kubernetes import watch

    class RawWatch(watch.Watch):  # type: ignore[misc]
        """Yields events with the wire's dicts: building client models for every Pod would
        cost more than everything pulltrace does with them."""

        def get_return_type(self, func: Any) -> None:
            return None

    return RawWatch


T = TypeVar("T")


class ListWatch(Generic[T]):
    def __init__(
        self,
        name: str,
        list_fn: Callable[..., Any],
        args: tuple[str, ...],
        digest: Callable[[Mapping[str, Any]], T],
        on_list: Callable[[list[T]], bool],
        on_event: Callable[[str, Mapping[str, Any]], bool],
        on_change: Callable[[], None],
        *,
        field_selector: str = "",
        backoff: Backoff = DEFAULT_BACKOFF,
        page_size: int = PAGE_SIZE,
    ) -> None:
        """``on_list`` gets every (re)list, ``on_event`` every watch event; both say whether
        anything changed, and ``on_change`` is then called from this thread. A list's objects
        reach ``on_list`` through ``digest``, applied to each page as it comes: what pulltrace
        keeps of an object is a small part of it, and holding a large cluster's objects whole
        until the last page would cost several times the list's JSON."""
        self.name = name
        self._digest = digest
        self._list_fn = list_fn
        self._args = args
        self._on_list = on_list
        self._on_event = on_event
        self._on_change = on_change
        self._selector = {"field_selector": field_selector} if field_selector else {}
        self._backoff = backoff
        self._page_size = page_size
        self._delay = backoff.initial
        self._last_problem = ""
        self.resource_version: str | None = None
        self.synced = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watch: Any = None
        self._thread = threading.Thread(target=self._run, name=f"pulltrace-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def signal_stop(self) -> None:
        self._stopping.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Interrupts a blocked watch read by shutting its socket; repeated because the read
        may only just be starting when we first try."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            with self._lock:
                current = self._watch
            if current is not None:
                current.stop()
            self._thread.join(0.05)

    def _run(self) -> None:
        from kubernetes.client.exceptions import ApiException

        while not self._stopping.is_set():
            problem = ""
            try:
                if self.resource_version is None:
                    self._list()
                if self._watch_once():
                    continue
            except ApiException as exc:
                if exc.status == HTTPStatus.GONE:
                    # Relist after the usual pause: a server that keeps expiring fresh
                    # versions must not be hammered with lists.
                    log.info("%s: resourceVersion expired, relisting", self.name)
                    self.resource_version = None
                else:
                    problem = f"HTTP {exc.status} {exc.reason}".strip()
            except Exception as exc:
                problem = " ".join(f"{type(exc).__name__}: {exc}".split())
            if self._stopping.is_set():
                break
            if problem:
                # The same failure every 30 s for hours (RBAC, say) is one warning, not
                # hundreds.
                level = logging.DEBUG if problem == self._last_problem else logging.WARNING
                log.log(level, "%s: %s; retrying in %.1fs", self.name, problem, self._delay)
            self._last_problem = problem
            self._stopping.wait(self._delay * random.uniform(0.8, 1.0))
            self._delay = min(self._delay * 2, self._backoff.maximum)

    def _list(self) -> None:
        items, version = self._list_pages()
        changed = self._on_list(items)
        self.resource_version = version
        self._delay, self._last_problem = self._backoff.initial, ""
        if not self.synced.is_set():
            log.info("%s: listed %d objects", self.name, len(items))
            self.synced.set()
        if changed:
            self._notify()

    def _list_pages(self) -> tuple[list[T], str]:
        """Every object, digested, and the version to watch from. All pages are cut from the
        snapshot the first one was taken from, so its resourceVersion is the list's. When etcd
        compacts that snapshot away before the last page (a 410 on a continuation), the list
        starts again: the pages so far cannot be completed consistently."""
        from kubernetes.client.exceptions import ApiException

        items: list[T] = []
        version = ""
        token = ""
        while True:
            try:
                page_version, token = self._page(token, items)
            except ApiException as exc:
                if exc.status != HTTPStatus.GONE or not token or self._stopping.is_set():
                    raise
                log.info(
                    "%s: list continuation expired after %d objects, listing again",
                    self.name,
                    len(items),
                )
                items, version, token = [], "", ""
                continue
            version = version or page_version
            if not token:
                return items, version

    def _page(self, token: str, items: list[T]) -> tuple[str, str]:
        """One page's objects, digested, onto ``items``; its resourceVersion and the token for
        the next page ("" after the last)."""
        extra: dict[str, Any] = {"_continue": token} if token else {}
        resp = self._list_fn(
            *self._args,
            limit=self._page_size,
            _preload_content=False,
            _request_timeout=(CONNECT_TIMEOUT, LIST_READ_TIMEOUT),
            **self._selector,
            **extra,
        )
        try:
            doc = json.loads(resp.data)
        finally:
            resp.release_conn()
        if not isinstance(doc, Mapping):
            raise ValueError("the list is not a JSON object")
        items.extend(self._digest(i) for i in doc.get("items") or [] if isinstance(i, Mapping))
        meta = doc.get("metadata") or {}
        return str(meta["resourceVersion"]), str(meta.get("continue") or "")

    def _watch_once(self) -> bool:
        """One watch request; True when it delivered anything, so that the next one may
        start at once."""
        watch = _raw_watch_class()()
        with self._lock:
            if self._stopping.is_set():
                return False
            self._watch = watch
        seconds = random.randint(*WATCH_SECONDS)
        delivered = False
        try:
            for event in watch.stream(
                self._list_fn,
                *self._args,
                resource_version=self.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=seconds,
                _request_timeout=(CONNECT_TIMEOUT, seconds + 30),
                **self._selector,
            ):
                delivered = True
                self._delay, self._last_problem = self._backoff.initial, ""
                self._deliver(event)
                if self._stopping.is_set():
                    break
        finally:
            with self._lock:
                self._watch = None
        return delivered

    def _deliver(self, event: Mapping[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("raw_object")
        if not isinstance(obj, Mapping):
            return
        meta = obj.get("metadata")
        version = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
        if version:
            self.resource_version = str(version)
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return  # BOOKMARK: only the version moves
        try:
            changed = self._on_event(kind, obj)
        except Exception:
            # One object we cannot digest must not stop the watch or repeat forever.
            log.exception("%s: cannot apply %s event", self.name, kind)
            return
        if changed:
            self._notify()

    def _notify(self) -> None:
        try:
            self._on_change()
        except Exception:
            log.exception("%s: change listener failed", self.name)
