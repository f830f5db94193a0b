"""Builds OCI images in memory and pushes them over the registry HTTP API.

No docker or skopeo: tests need exact control over layer bytes and digests (shared layers,
known sizes, multi-platform indexes), and plain HTTP to a loopback registry is all it takes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import random
import tarfile
from dataclasses import dataclass, field

import httpx

from .util import Managed, MiB

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_layer(size_bytes: int, seed: int) -> bytes:
    """A gzip'd tar whose compressed size is about ``size_bytes``.

    The single file holds seeded random bytes: random so gzip cannot shrink it (the blob size,
    and so the download time through a throttle, is predictable), seeded so the same seed gives
    byte-identical blobs and two images can share a layer. Fixed metadata keeps it deterministic.
    """
    payload = random.Random(seed).randbytes(max(size_bytes - 2048, 0))
    info = tarfile.TarInfo(name=f"layer-{seed}.bin")
    info.size = len(payload)
    info.mtime = 0
    info.mode = 0o644
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(payload))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


def make_layers(count: int, size_bytes: int, seed_base: int = 0) -> list[bytes]:
    """Distinct layers with seeds ``seed_base .. seed_base+count-1`` (e.g. 60 for a benchmark)."""
    return [make_layer(size_bytes, seed_base + i) for i in range(count)]


def diff_id(layer: bytes) -> str:
    """The digest of the uncompressed tar, which containerd checks after unpacking."""
    return sha256_digest(gzip.decompress(layer))


@dataclass(frozen=True)
class PushedImage:
    """What a test needs to find a pushed image again in containerd's content store."""

    registry: str  # host:port the image was pushed to
    repo: str
    tag: str  # "" for a manifest pushed only by digest (an index child)
    manifest_digest: str
    manifest_size: int
    config_digest: str
    config_size: int
    layer_digests: list[str]
    layer_sizes: list[int]
    platform: str = "linux/amd64"

    @property
    def ref(self) -> str:
        return self.ref_at(self.registry)

    def ref_at(self, host_port: str) -> str:
        """The same image named through another host, e.g. the throttling proxy in front."""
        if self.tag:
            return f"{host_port}/{self.repo}:{self.tag}"
        return f"{host_port}/{self.repo}@{self.manifest_digest}"

    def digest_ref_at(self, host_port: str) -> str:
        return f"{host_port}/{self.repo}@{self.manifest_digest}"

    @property
    def total_size(self) -> int:
        """Bytes a cold pull downloads: manifest, config and every layer."""
        return self.manifest_size + self.config_size + sum(self.layer_sizes)


@dataclass(frozen=True)
class PushedIndex:
    registry: str
    repo: str
    tag: str
    index_digest: str
    index_size: int
    manifests: dict[str, PushedImage] = field(default_factory=dict)  # by "os/arch"

    @property
    def ref(self) -> str:
        return self.ref_at(self.registry)

    def ref_at(self, host_port: str) -> str:
        return f"{host_port}/{self.repo}:{self.tag}"


def _host_port(registry_url: str) -> str:
    return httpx.URL(registry_url).netloc.decode()


def push_blob(client: httpx.Client, registry_url: str, repo: str, data: bytes) -> str:
    """Monolithic upload, skipped when the registry already has the blob."""
    digest = sha256_digest(data)
    head = client.head(f"{registry_url}/v2/{repo}/blobs/{digest}")
    if head.status_code == 200:
        return digest
    start = client.post(f"{registry_url}/v2/{repo}/blobs/uploads/")
    start.raise_for_status()
    location = httpx.URL(registry_url).join(start.headers["Location"])
    put = client.put(
        location.copy_merge_params({"digest": digest}),
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    put.raise_for_status()
    return digest


def push_manifest(
    client: httpx.Client,
    registry_url: str,
    repo: str,
    reference: str,
    body: bytes,
    media_type: str,
) -> str:
    put = client.put(
        f"{registry_url}/v2/{repo}/manifests/{reference}",
        content=body,
        headers={"Content-Type": media_type},
    )
    put.raise_for_status()
    digest = sha256_digest(body)
    served = put.headers.get("Docker-Content-Digest", digest)
    if served != digest:
        raise RuntimeError(f"registry stored {served}, expected {digest}")
    return digest


def image_config(layers: list[bytes], architecture: str = "amd64", os_name: str = "linux") -> bytes:
    """The smallest config containerd's unpacker accepts: platform plus rootfs diff_ids."""
    config = {
        "architecture": architecture,
        "os": os_name,
        "created": "1970-01-01T00:00:00Z",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id(layer) for layer in layers]},
        "history": [
            {"created": "1970-01-01T00:00:00Z", "created_by": f"layer {i}"}
            for i in range(len(layers))
        ],
    }
    return json.dumps(config, sort_keys=True).encode()


def _push_platform_image(
    client: httpx.Client,
    registry_url: str,
    repo: str,
    tag: str,
    layers: list[bytes],
    architecture: str,
) -> PushedImage:
    config = image_config(layers, architecture=architecture)
    config_digest = push_blob(client, registry_url, repo, config)
    layer_digests = [push_blob(client, registry_url, repo, layer) for layer in layers]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [
            {"mediaType": OCI_LAYER_GZIP, "digest": d, "size": len(layer)}
            for d, layer in zip(layer_digests, layers, strict=True)
        ],
    }
    body = json.dumps(manifest, sort_keys=True).encode()
    digest = sha256_digest(body)
    push_manifest(client, registry_url, repo, tag or digest, body, OCI_MANIFEST)
    return PushedImage(
        registry=_host_port(registry_url),
        repo=repo,
        tag=tag,
        manifest_digest=digest,
        manifest_size=len(body),
        config_digest=config_digest,
        config_size=len(config),
        layer_digests=layer_digests,
        layer_sizes=[len(layer) for layer in layers],
        platform=f"linux/{architecture}",
    )


def push_image(
    registry_url: str,
    repo: str,
    tag: str,
    layers: list[bytes],
    *,
    architecture: str = "amd64",
    client: httpx.Client | None = None,
) -> PushedImage:
    """Pushes a single-platform OCI image; ``registry_url`` is like ``http://127.0.0.1:5000``."""
    if client is None:
        with httpx.Client(timeout=60.0) as own:
            return _push_platform_image(own, registry_url, repo, tag, layers, architecture)
    return _push_platform_image(client, registry_url, repo, tag, layers, architecture)


def push_index(
    registry_url: str,
    repo: str,
    tag: str,
    amd64_layers: list[bytes],
    arm64_layers: list[bytes],
    *,
    client: httpx.Client | None = None,
) -> PushedIndex:
    """Pushes an OCI index over an amd64 and an arm64 image, each child by digest only."""
    own = client is None
    http = httpx.Client(timeout=60.0) if client is None else client
    try:
        children = {
            "linux/amd64": _push_platform_image(
                http, registry_url, repo, "", amd64_layers, "amd64"
            ),
            "linux/arm64": _push_platform_image(
                http, registry_url, repo, "", arm64_layers, "arm64"
            ),
        }
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": child.manifest_digest,
                    "size": child.manifest_size,
                    "platform": {"os": "linux", "architecture": child.platform.split("/")[1]},
                }
                for child in children.values()
            ],
        }
        body = json.dumps(index, sort_keys=True).encode()
        digest = push_manifest(http, registry_url, repo, tag, body, OCI_INDEX)
    finally:
        if own:
            http.close()
    return PushedIndex(
        registry=_host_port(registry_url),
        repo=repo,
        tag=tag,
        index_digest=digest,
        index_size=len(body),
        manifests=children,
    )


class ImagePusher(Managed):
    """Pushes images whose layer seeds are never reused, so no test finds its layers pre-pulled."""

    def __init__(self, registry_url: str, first_seed: int = 1000) -> None:
        self.registry_url = registry_url
        self._seeds = itertools.count(first_seed)
        self._names = itertools.count(1)
        self._client = httpx.Client(timeout=60.0)

    def layers(self, count: int, size: int = MiB) -> list[bytes]:
        return [make_layer(size, next(self._seeds)) for _ in range(count)]

    def image(
        self,
        layers: int | list[bytes] = 3,
        size: int = MiB,
        *,
        repo: str | None = None,
        tag: str = "v1",
    ) -> PushedImage:
        """``layers`` is a count of new layers of ``size`` bytes, or the layer blobs themselves."""
        blobs = self.layers(layers, size) if isinstance(layers, int) else layers
        repo = repo or f"e2e/img{next(self._names)}"
        return push_image(self.registry_url, repo, tag, blobs, client=self._client)

    def index(
        self, amd64_layers: int = 2, arm64_layers: int = 1, size: int = MiB, *, tag: str = "v1"
    ) -> PushedIndex:
        return push_index(
            self.registry_url,
            f"e2e/idx{next(self._names)}",
            tag,
            self.layers(amd64_layers, size),
            self.layers(arm64_layers, size),
            client=self._client,
        )

    def close(self) -> None:
        self._client.close()
