"""An in-memory content store speaking the same filters the tracker sends to containerd.

Only for deterministic lifecycle unit tests (clock control, exact stalls); the same behaviour is
proven against a real containerd in tests/e2e.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from pulltrace.agent.containerd import BlobInfo, Ingest

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_LABEL = re.compile(r'^labels\."([^"]+)"$')
_DIGEST = re.compile(r'^digest=="([^"]+)"$')


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeStore:
    def __init__(self) -> None:
        self.blobs: dict[str, tuple[bytes, dict[str, str], datetime]] = {}
        self.ingests: dict[str, Ingest] = {}
        self.now = T0
        self.calls: list[str] = []

    def tick(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def commit(
        self, data: bytes, labels: dict[str, str] | None = None, at: datetime | None = None
    ) -> str:
        digest = digest_of(data)
        self.blobs[digest] = (data, dict(labels or {}), at or self.now)
        self.ingests.pop(f"layer-{digest}", None)
        return digest

    def write(self, ref: str, offset: int, total: int, at: datetime | None = None) -> None:
        """``at`` stamps the write at another instant than now, as containerd stamps each
        1 MiB step when it happens, whenever we poll."""
        old = self.ingests.get(ref)
        stamp = at or self.now
        started = old.started_at if old else stamp
        updated = stamp if old is None or offset != old.offset else old.updated_at
        self.ingests[ref] = Ingest(ref, "", offset, total, started, updated)

    def push_manifest(self, layers: list[bytes], repo: str, host: str = "reg.local:5000") -> str:
        config = json.dumps({"repo": repo, "n": len(layers)}).encode()
        doc = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"digest": digest_of(config), "size": len(config)},
            "layers": [
                {
                    "digest": digest_of(layer),
                    "size": len(layer),
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                }
                for layer in layers
            ],
        }
        labels = {
            "containerd.io/gc.ref.content.config": digest_of(config),
            f"containerd.io/distribution.source.{host}": repo,
        }
        for i, layer in enumerate(layers):
            labels[f"containerd.io/gc.ref.content.l.{i}"] = digest_of(layer)
        return self.commit(json.dumps(doc).encode(), labels)

    def list_statuses(self) -> list[Ingest]:
        self.calls.append("ListStatuses")
        return list(self.ingests.values())

    def list(self, filters: Iterable[str]) -> list[BlobInfo]:
        self.calls.append("List")
        wanted = list(filters)
        out = []
        for digest, (data, labels, created) in self.blobs.items():
            for f in wanted:
                label, exact = _LABEL.match(f), _DIGEST.match(f)
                if (label and label.group(1) in labels) or (exact and exact.group(1) == digest):
                    out.append(BlobInfo(digest, len(data), created, dict(labels)))
                    break
        return out

    def read(self, digest: str, limit: int = 0) -> bytes:
        self.calls.append("Read")
        return self.blobs[digest][0]
