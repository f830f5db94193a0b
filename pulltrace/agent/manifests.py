"""Maps anonymous content-store digests to the images they belong to.

containerd commits an image's manifest before it fetches the layers, and labels it with
``containerd.io/gc.ref.content.l.<i>`` for each layer (``...config`` for the config, and
``...m.<i>`` on an index for its manifests). Those labels let us attribute every layer ingest to
its image without any knowledge of the pull's origin. Manifests are immutable, so everything
read here is cached for the life of the process.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pulltrace.agent.containerd import BlobInfo, ContentStore

GC_LAYER = "containerd.io/gc.ref.content.l."
GC_CONFIG = "containerd.io/gc.ref.content.config"
GC_MANIFEST = "containerd.io/gc.ref.content.m."
SOURCE = "containerd.io/distribution.source."

_SCAN_FILTERS = (f'labels."{GC_CONFIG}"', f'labels."{GC_MANIFEST}0"')


@dataclass(frozen=True, slots=True)
class Layer:
    digest: str
    size: int
    media_type: str


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: str
    config: str
    layers: tuple[Layer, ...]
    committed_at: datetime
    """When the manifest was written: layers committed before it were already cached."""
    repository: str
    """``registry/path`` as the runtime normalises it, e.g. ``docker.io/library/nginx``."""


def repository_from_labels(labels: dict[str, str]) -> str:
    sources = sorted((k[len(SOURCE) :], v) for k, v in labels.items() if k.startswith(SOURCE))
    if not sources:
        return ""
    host, path = sources[0]
    return f"{host}/{path.split(',')[0]}"


def parse_manifest(info: BlobInfo, raw: bytes) -> Manifest:
    doc = json.loads(raw)
    layers = tuple(
        Layer(digest=str(d["digest"]), size=int(d["size"]), media_type=str(d.get("mediaType", "")))
        for d in doc.get("layers") or []
        # Foreign layers (Windows base images) are never fetched from the registry.
        if not d.get("urls")
    )
    config = str((doc.get("config") or {}).get("digest", ""))
    return Manifest(
        info.digest, config, layers, info.created_at, repository_from_labels(info.labels)
    )


TRIED_FOR = 3600.0
"""Seconds a digest that no manifest owned is remembered as already looked up."""


class ManifestIndex:
    """Answers "which manifests own this digest?" with one content-store scan per new digest."""

    def __init__(self, client: ContentStore, rescan_after: float = 5.0) -> None:
        self._client = client
        self._rescan_after = rescan_after
        self._owners: dict[str, set[str]] = {}
        self._infos: dict[str, BlobInfo] = {}
        self._manifests: dict[str, Manifest] = {}
        self._index_of: dict[str, str] = {}
        self._indexes: set[str] = set()
        self._tried: dict[str, float] = {}
        self.scans = 0

    def resolve(self, digests: Iterable[str], now: float) -> None:
        """Scans the store when a digest is new to us, or still unknown after a while."""
        due = [
            d
            for d in digests
            if d not in self._owners
            and not self.is_manifest(d)
            and now - self._tried.get(d, -1e18) >= self._rescan_after
        ]
        if not due:
            return
        self._scan()
        for d in due:
            self._tried[d] = now
        # A digest no manifest claimed for this long is an orphan ingest (or was deleted):
        # forgetting it only means one more scan should it ever come back.
        expired = now - TRIED_FOR
        for d in [d for d, at in self._tried.items() if at < expired]:
            del self._tried[d]

    def forget(self, digest: str) -> None:
        self._tried.pop(digest, None)

    def owners(self, digest: str) -> set[str]:
        return self._owners.get(digest, set())

    def is_manifest(self, digest: str) -> bool:
        return digest in self._infos or digest in self._indexes

    def index_of(self, manifest_digest: str) -> str:
        return self._index_of.get(manifest_digest, "")

    def manifest(self, digest: str) -> Manifest | None:
        cached = self._manifests.get(digest)
        if cached is not None:
            return cached
        info = self._infos.get(digest)
        if info is None:
            return None
        try:
            manifest = parse_manifest(info, self._client.read(digest))
        except (ValueError, KeyError, TypeError):
            return None
        self._manifests[digest] = manifest
        return manifest

    def _scan(self) -> None:
        self.scans += 1
        infos: list[BlobInfo] = self._client.list(_SCAN_FILTERS)
        self._drop_deleted({info.digest for info in infos})
        for info in infos:
            if info.digest in self._infos:
                continue
            for key, child in info.labels.items():
                if key.startswith(GC_MANIFEST):
                    self._index_of[child] = info.digest
                    self._indexes.add(info.digest)
            if GC_CONFIG not in info.labels:
                continue
            self._infos[info.digest] = info
            for key, child in info.labels.items():
                if key.startswith(GC_LAYER) or key == GC_CONFIG:
                    self._owners.setdefault(child, set()).add(info.digest)

    def _drop_deleted(self, listed: set[str]) -> None:
        """Forgets the manifests and indexes the store no longer has (their image was removed
        and garbage collected), with what they owned: a node pulls new images for as long as
        it runs, and an index that only grew would be a leak (bench/soak.py measured it at
        about 21 MiB an hour under steady churn)."""
        for digest in [d for d in self._infos if d not in listed]:
            info = self._infos.pop(digest)
            self._manifests.pop(digest, None)
            for key, child in info.labels.items():
                if key.startswith(GC_LAYER) or key == GC_CONFIG:
                    owners = self._owners.get(child)
                    if owners is not None:
                        owners.discard(digest)
                        if not owners:
                            del self._owners[child]
        self._indexes &= listed
        for child in [c for c, index in self._index_of.items() if index not in listed]:
            del self._index_of[child]
