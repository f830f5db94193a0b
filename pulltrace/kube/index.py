"""What the cluster says about image pulls, kept current by the watch threads.

Watch threads write; the collector's event loop reads on every agent report. Reads are dict
lookups under a lock held for microseconds; all derivation happens on the writer's side when an
object changes, and only for the (node, image) pairs that object touches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from pulltrace.kube.attempts import Row, kubelet_row
from pulltrace.kube.pods import (
    KubeletEvent,
    Observation,
    Pod,
    PodContainer,
    parse_event,
    parse_pod,
)
from pulltrace.kube.refs import ImageRef, agent_repo_key, try_parse
from pulltrace.model import PodRef, PullStatus

PodKey = tuple[str, str]
"""(namespace, name): a recreated pod gets a new uid but the watch sees DELETED first."""
ImageKey = tuple[str, ImageRef]
"""(node, image): one kubelet pull history."""
RepoKey = tuple[str, str]
"""(node, "<host without port>/<path>"): what an agent report can be matched by."""

DEFAULT_HISTORY_TTL = 30 * 60.0


@dataclass(frozen=True, slots=True)
class _Waiting:
    pod: PodContainer
    ref: ImageRef
    digest: str


def _utcnow() -> datetime:
    return datetime.now(UTC)


class KubeIndex:
    def __init__(
        self,
        history_ttl: float = DEFAULT_HISTORY_TTL,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._ttl = history_ttl
        self._clock = clock or _utcnow
        self._lock = threading.Lock()
        self._pods: dict[PodKey, Pod] = {}
        self._waiting: dict[RepoKey, dict[tuple[PodKey, str], _Waiting]] = {}
        self._users: dict[ImageKey, set[PodKey]] = {}
        self._obs: dict[ImageKey, set[Observation]] = {}
        self._rows: dict[ImageKey, Row] = {}
        self._active: dict[RepoKey, set[ImageRef]] = {}
        self._swept = self._clock()

    # -- readers (event loop) ---------------------------------------------------------------

    def match(self, node: str, repository: str, manifest_digest: str) -> tuple[list[PodRef], str]:
        key = (node, agent_repo_key(repository))
        with self._lock:
            waiting = list(self._waiting.get(key, {}).values())
            active = list(self._active.get(key, ()))
        if manifest_digest:
            # Only a known equal digest narrows: a pod's digest may name the index while the
            # agent reports the platform manifest, so a mismatch alone proves nothing.
            exact = {w.ref for w in waiting if w.digest == manifest_digest}
            if exact:
                waiting = [w for w in waiting if w.ref in exact or w.digest == manifest_digest]
        refs = {w.ref for w in waiting}
        if len(refs) > 1:
            # Several tags of one repository wait on this node: kubelet's own "Pulling" says
            # which one is downloading.
            pulling = [r for r in active if r in refs]
            if len(pulling) == 1:
                refs = {pulling[0]}
                waiting = [w for w in waiting if w.ref == pulling[0]]
        if not refs and len(active) == 1:
            refs = set(active)
        image_ref = str(next(iter(refs))) if len(refs) == 1 else ""
        return [p.ref() for p in sorted({w.pod for w in waiting})], image_ref

    def kubelet_pulls(self) -> list[PullStatus]:
        now = self._clock()
        with self._lock:
            rows = list(self._rows.items())
            expired = [k for k, row in rows if self._expired(row, now)]
            for key in expired:
                del self._rows[key]
                self._obs.pop(key, None)
        gone = set(expired)
        return [
            msgspec.structs.replace(row.status, pods=list(row.status.pods))
            for key, row in rows
            if key not in gone
        ]

    # -- writers (watch threads) ------------------------------------------------------------

    def apply_pod(self, kind: str, obj: Mapping[str, Any]) -> bool:
        """One watch event; True when answers may have changed."""
        pod = parse_pod(obj)
        with self._lock:
            return self._recompute(self._put_pod(pod, deleted=kind == "DELETED"))

    def replace_pods(self, namespace: str | None, pods: Iterable[Pod]) -> bool:
        """A (re)list, parsed page by page as it came (``parse_pod``): pods in scope that the
        list lacks were deleted while we were not watching."""
        pods = list(pods)
        keys = {(p.namespace, p.name) for p in pods}
        touched: set[ImageKey] = set()
        with self._lock:
            for key, old in list(self._pods.items()):
                if (namespace is None or old.namespace == namespace) and key not in keys:
                    touched |= self._put_pod(old, deleted=True)
            for pod in pods:
                touched |= self._put_pod(pod, deleted=False)
            return self._recompute(touched)

    def apply_event(self, kind: str, obj: Mapping[str, Any]) -> bool:
        # An Event's deletion is the API server's TTL, not news about the pull.
        if kind == "DELETED":
            return False
        with self._lock:
            return self._recompute(self._add_event(parse_event(obj)))

    def replace_events(self, events: Iterable[KubeletEvent | None]) -> bool:
        """A (re)list, parsed page by page as it came (``parse_event``)."""
        touched: set[ImageKey] = set()
        with self._lock:
            for event in events:
                touched |= self._add_event(event)
            return self._recompute(touched)

    # -- internals (lock held) --------------------------------------------------------------

    def _put_pod(self, pod: Pod, deleted: bool) -> set[ImageKey]:
        key = (pod.namespace, pod.name)
        old = self._pods.get(key)
        new = None if deleted else pod
        if old == new:
            return set()
        touched: set[ImageKey] = set()
        if old is not None:
            touched |= self._unindex(key, old)
        if new is None:
            self._pods.pop(key, None)
        else:
            self._pods[key] = new
            touched |= self._index(key, new)
        return touched

    def _index(self, key: PodKey, pod: Pod) -> set[ImageKey]:
        touched: set[ImageKey] = set()
        if not pod.node:
            return touched
        for c in pod.containers:
            if c.ref is None:
                continue
            image_key = (pod.node, c.ref)
            self._users.setdefault(image_key, set()).add(key)
            touched.add(image_key)
            if c.not_running:
                entry = _Waiting(pod.ref(c.name), c.ref, c.ref.digest or c.digest)
                self._waiting.setdefault((pod.node, c.ref.repo_key), {})[(key, c.name)] = entry
        return touched

    def _unindex(self, key: PodKey, pod: Pod) -> set[ImageKey]:
        touched: set[ImageKey] = set()
        for c in pod.containers:
            if c.ref is None or not pod.node:
                continue
            image_key = (pod.node, c.ref)
            touched.add(image_key)
            _discard(self._users, image_key, key)
            repo = (pod.node, c.ref.repo_key)
            waiting = self._waiting.get(repo)
            if waiting is not None:
                waiting.pop((key, c.name), None)
                if not waiting:
                    del self._waiting[repo]
        return touched

    def _add_event(self, event: KubeletEvent | None) -> set[ImageKey]:
        if event is None:
            return set()
        pod = None
        if event.observations:
            p = event.observations[0].pod
            pod = self._pods.get((p.namespace, p.pod_name))
            if pod is not None and event.pod_uid and pod.uid and pod.uid != event.pod_uid:
                pod = None  # an earlier pod of the same name
        node = event.node or (pod.node if pod else "")
        image = event.image
        if not image and pod is not None:
            container = pod.container(event.container)
            image = container.image if container else ""
        ref = try_parse(image) if image else None
        if not node or ref is None:
            return set()
        key = (node, ref)
        seen = self._obs.setdefault(key, set())
        new = set(event.observations) - seen
        if not new:
            return set()
        seen |= new
        return {key}

    def _recompute(self, keys: set[ImageKey]) -> bool:
        if not keys:
            return False
        now = self._clock()
        for key in keys:
            node, ref = key
            users = [
                (pod, c)
                for pk in self._users.get(key, ())
                for pod in (self._pods[pk],)
                for c in pod.containers
                if c.ref == ref
            ]
            row = kubelet_row(node, ref, self._obs.get(key, ()), users)
            if row is None or self._expired(row, now):
                self._rows.pop(key, None)
            else:
                self._rows[key] = row
            repo = (node, ref.repo_key)
            if row is not None and row.status.phase == "pulling":
                self._active.setdefault(repo, set()).add(ref)
            else:
                _discard(self._active, repo, ref)
        if (now - self._swept).total_seconds() > self._ttl / 4:
            self._sweep(now)
        return True

    def _sweep(self, now: datetime) -> None:
        """Forgets observations that no longer make a row (an image already present, pulls
        older than the history TTL) once they are older than the TTL themselves."""
        self._swept = now
        for key, seen in list(self._obs.items()):
            if key in self._rows:
                continue
            if all((now - o.at).total_seconds() > self._ttl for o in seen):
                del self._obs[key]

    def _expired(self, row: Row, now: datetime) -> bool:
        return row.ended_at is not None and (now - row.ended_at).total_seconds() > self._ttl


K = TypeVar("K")
V = TypeVar("V")


def _discard(index: dict[K, set[V]], key: K, value: V) -> None:
    values = index.get(key)
    if values is not None:
        values.discard(value)
        if not values:
            del index[key]
