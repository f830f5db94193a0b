"""A simulated cluster whose agents report realistic pulls, for ``--demo``, screenshots and tests.

It produces the same ``AgentReport``s that real agents POST, so the demo exercises the real
collector merge code rather than a shortcut into the view. Everything is a pure function of the
seed and the times passed to ``step``: the same seed stepped at the same instants gives the same
reports, which is what makes screenshots reproducible.

The traffic is shaped after what makes pulls slow in practice: images share base layers (so a
node that already ran one image of a family finds part of the next one cached), each node's
bandwidth is shared by its concurrent pulls and wanders over time, containerd fetches three
layers of a pull at once, a rollout pulls one image onto many nodes at the same moment, and a
GPU image takes minutes.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pulltrace.model import (
    AgentReport,
    DiunNotification,
    LayerStatus,
    Phase,
    PodRef,
    PullStatus,
)
from pulltrace.render import short_digest
from pulltrace.rollup import rollup, share

MiB = 1024 * 1024
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
CONCURRENT_LAYERS = 3
"""containerd's default ``max_concurrent_downloads`` per pull."""
RETAIN = 60.0
"""Seconds an agent keeps reporting a finished pull, like the tracker's ``retain``."""
OUTAGE_AFTER = 120.0
"""Seconds from the start to the first containerd outage: after the demo's warm-up, so that
screenshots open on a healthy cluster."""
OUTAGE_EVERY = 300.0
OUTAGE_FOR = 25.0
SOCKET = "/run/containerd/containerd.sock"
OUTAGE_ERROR = "connection refused"
"""What a real agent reports while containerd restarts."""


def _digest(*parts: object) -> str:
    return "sha256:" + hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Base:
    name: str
    sizes: tuple[float, ...]
    """Layer sizes in MiB."""
    media_type: str = DOCKER_GZIP


@dataclass(frozen=True, slots=True)
class Image:
    ref: str
    base: Base | None
    sizes: tuple[float, ...]
    namespace: str
    workload: str
    media_type: str = OCI_GZIP
    weight: float = 1.0

    @property
    def repository(self) -> str:
        return self.ref.rsplit(":", 1)[0]

    def layers(self) -> list[tuple[str, int, str]]:
        """(digest, bytes, media type): base layers first, with digests shared by the family."""
        out = []
        if self.base is not None:
            for i, size in enumerate(self.base.sizes):
                out.append((_digest(self.base.name, i), int(size * MiB), self.base.media_type))
        for i, size in enumerate(self.sizes):
            out.append((_digest(self.ref, i), int(size * MiB), self.media_type))
        return out

    @property
    def manifest_digest(self) -> str:
        return _digest(self.ref, "manifest")


DEBIAN = Base("debian:bookworm-slim", (28.2,))
ALPINE = Base("alpine:3.20", (3.5,))
UBUNTU = Base("ubuntu:22.04", (28.4,))
PYTHON = Base("python:3.12-slim", (28.2, 3.3, 12.4, 0.2))
NODEJS = Base("node:20-slim", (28.2, 3.1, 41.5, 1.7))
DISTROLESS_JAVA = Base("distroless/java21-debian12", (0.1, 0.4, 2.1, 59.8), OCI_GZIP)

CATALOG: tuple[Image, ...] = (
    Image("ghcr.io/acme/checkout-api:v2.14.1", PYTHON, (18.2, 96.4, 0.4), "shop", "checkout-api"),
    Image("ghcr.io/acme/web-frontend:2024.11.3", NODEJS, (4.2, 131.0, 0.1), "shop", "web"),
    Image(
        "ghcr.io/acme/billing-worker:1.9.0", DISTROLESS_JAVA, (88.0, 142.5), "billing", "billing"
    ),
    Image(
        "nvcr.io/nvidia/pytorch:24.08-py3",
        UBUNTU,
        (512.0, 1840.0, 96.0, 1210.0, 23.5, 804.0),
        "ml",
        "trainer",
        weight=0.2,
    ),
    Image("docker.io/library/postgres:16.4", DEBIAN, (4.1, 1.2, 8.3, 1.2, 104.0), "data", "pg"),
    Image("docker.io/library/redis:7.4", DEBIAN, (1.1, 0.4, 12.9), "shop", "redis", DOCKER_GZIP),
    Image("docker.io/library/nginx:1.27.3", DEBIAN, (40.1, 0.6), "shop", "edge", DOCKER_GZIP),
    Image(
        "registry.k8s.io/ingress-nginx/controller:v1.11.2",
        ALPINE,
        (2.1, 48.3, 38.0, 0.5),
        "ingress-nginx",
        "ingress-nginx-controller",
    ),
    Image(
        "quay.io/prometheus/prometheus:v2.54.1",
        None,
        (1.2, 0.9, 52.4, 47.7),
        "monitoring",
        "prometheus",
    ),
    Image(
        "docker.io/grafana/grafana:11.2.0", ALPINE, (1.4, 9.8, 88.1, 31.4), "monitoring", "grafana"
    ),
    Image("docker.io/bitnami/kafka:3.8.0", DEBIAN, (211.0, 68.0), "data", "kafka", weight=0.5),
    Image(
        "quay.io/jetstack/cert-manager-controller:v1.15.3",
        None,
        (0.2, 19.6),
        "cert-manager",
        "cert-manager",
    ),
    Image(
        "docker.io/envoyproxy/envoy:v1.31.2", UBUNTU, (3.2, 21.9, 0.1), "shop", "envoy", OCI_ZSTD
    ),
    Image(
        "ghcr.io/acme/search-indexer:0.31.0", PYTHON, (356.0, 0.8), "search", "indexer", weight=0.6
    ),
)


@dataclass(slots=True)
class _Layer:
    digest: str
    size: int
    media_type: str
    cached: bool
    offset: int = 0
    started: float | None = None
    completed: float | None = None
    speed: float = 0.0

    def status(self) -> LayerStatus:
        done = self.cached or self.completed is not None
        return LayerStatus(
            digest=self.digest,
            media_type=self.media_type,
            total_bytes=self.size,
            downloaded_bytes=0 if self.cached else self.offset,
            bytes_per_sec=0.0 if done else self.speed,
            percent=100.0 if done else share(self.offset, self.size),
            started_at=_dt(self.started),
            completed_at=_dt(self.completed),
            cached=self.cached,
            total_known=True,
        )


@dataclass(slots=True)
class _Pull:
    id: str
    node: str
    image: Image
    start: float
    layers: list[_Layer]
    pods: list[PodRef]
    fail_at: float | None = None
    """Fraction of the download at which the registry connection drops, if it will."""
    end: float | None = None
    error: str = ""
    speed: float = 0.0

    @property
    def active(self) -> bool:
        return self.end is None

    def status(self) -> PullStatus:
        layers = [layer.status() for layer in self.layers]
        phase: Phase = "failed" if self.error else ("pulling" if self.active else "completed")
        figures = rollup(
            phase, layers, speed=self.speed, started_at=_dt(self.start), completed_at=_dt(self.end)
        )
        return PullStatus(
            id=self.id,
            node_name=self.node,
            image_ref=f"{self.image.repository}@{_digest(self.image.ref, 'index')}",
            repository=self.image.repository,
            manifest_digest=self.image.manifest_digest,
            phase=phase,
            started_at=_dt(self.start),
            completed_at=_dt(self.end),
            error=self.error,
            layers=layers,
            **figures.fields(),
        )


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


@dataclass(slots=True)
class _Node:
    name: str
    bandwidth: float
    """Bytes per second the node gets from registries, before the wander."""
    store: set[str] = field(default_factory=set)
    """Layer digests already in the node's content store."""
    wander: float = 1.0


class SimPods:
    """The waiting pods of each simulated pull, answering as the collector's pod correlator
    does, so that the demo shows pods through the real correlation path."""

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], tuple[list[PodRef], str]] = {}
        self._listener: Callable[[], None] | None = None

    def add(self, node: str, manifest_digest: str, pods: list[PodRef], image_ref: str) -> None:
        self._pods[(node, manifest_digest)] = (pods, image_ref)
        if self._listener is not None:
            self._listener()

    def match(self, node: str, repository: str, manifest_digest: str) -> tuple[list[PodRef], str]:
        return self._pods.get((node, manifest_digest), ([], ""))

    def kubelet_pulls(self) -> list[PullStatus]:
        return []

    @property
    def synced(self) -> bool:
        return True

    def set_listener(self, fn: Callable[[], None]) -> None:
        self._listener = fn


class SimCluster:
    """``nodes`` simulated nodes; ``rate`` new pulls per second across the cluster after the
    opening rollout."""

    def __init__(self, seed: int, nodes: int = 20, rate: float = 0.45, start: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.rate = rate
        self.pods = SimPods()
        gpu = min(2, max(0, nodes - 1))
        names = [f"worker-{i + 1:02d}" for i in range(nodes - gpu)]
        names += [f"gpu-{i + 1:02d}" for i in range(gpu)]
        self.nodes = [_Node(n, self.rng.uniform(4, 16) * MiB) for n in names]
        for node in self.nodes:
            if node.name.startswith("gpu"):
                node.bandwidth = self.rng.uniform(28, 40) * MiB
            for base in (DEBIAN, ALPINE, UBUNTU, PYTHON):
                if self.rng.random() < (0.3 if base is PYTHON else 0.6):
                    node.store.update(_digest(base.name, i) for i in range(len(base.sizes)))
        self.pulls: list[_Pull] = []
        self.start = start
        self.now = start
        self._outage: tuple[int, str] | None = None
        self._serial = 0
        self._next_arrival = start + self.rng.expovariate(rate) if rate > 0 else float("inf")
        self._open(start)

    def _open(self, now: float) -> None:
        """A rollout of one image to many nodes, a GPU job and one pull that will fail: the
        situations people open pulltrace for."""
        workers = [n for n in self.nodes if not n.name.startswith("gpu")]
        rollout = self.rng.sample(workers, min(len(workers), 7))
        for i, node in enumerate(rollout):
            self._start(node, CATALOG[0], now - self.rng.uniform(0, 6) - i * 0.5)
        for node in (n for n in self.nodes if n.name.startswith("gpu")):
            self._start(node, CATALOG[3], now - self.rng.uniform(20, 40))
        if workers:
            # Later, so that its failure is still on screen after a warm-up.
            failing = self._start(workers[-1], CATALOG[2], now + 30.0)
            failing.fail_at = 0.37

    def _start(self, node: _Node, image: Image, now: float) -> _Pull:
        self._serial += 1
        layers = [
            _Layer(digest, size, media, cached=digest in node.store)
            for digest, size, media in image.layers()
        ]
        pull_id = _digest(node.name, image.manifest_digest, self._serial)[7:23]
        suffix = _digest(self.seed, self._serial)[7:17]
        replicas = 1 + int(self.rng.random() < 0.35) + int(self.rng.random() < 0.15)
        pods = [
            PodRef(
                namespace=image.namespace,
                pod_name=f"{image.workload}-{suffix[:9]}-{_digest(suffix, r)[7:12]}",
                container=image.workload.split("-")[0],
            )
            for r in range(replicas)
        ]
        pull = _Pull(pull_id, node.name, image, now, layers, pods)
        if self.rng.random() < 0.03:
            pull.fail_at = self.rng.uniform(0.2, 0.8)
        self.pulls.append(pull)
        self.pods.add(node.name, image.manifest_digest, pods, image.ref)
        return pull

    def step(self, now: float) -> list[AgentReport]:
        """Advances the cluster to ``now`` and returns one report per node, as each node's
        agent would send it."""
        dt = now - self.now
        if dt > 0:
            self._arrivals(now)
            self._advance(now, dt)
            self.now = now
        self.pulls = [p for p in self.pulls if p.active or (p.end or now) > now - RETAIN]
        stamp = _dt(now) or datetime.now(UTC)
        by_node: dict[str, list[PullStatus]] = {n.name: [] for n in self.nodes}
        for pull in self.pulls:
            if pull.start <= now:
                by_node[pull.node].append(pull.status())
        down = self.down(now)
        return [
            AgentReport(
                node_name=name,
                timestamp=stamp,
                pulls=pulls,
                agent_version="sim",
                containerd_reachable=name != down,
                containerd_socket=SOCKET,
                containerd_error=OUTAGE_ERROR if name == down else "",
            )
            for name, pulls in by_node.items()
        ]

    def down(self, now: float) -> str | None:
        """The node whose containerd is restarting at ``now``, if any: every ``OUTAGE_EVERY``
        seconds, for ``OUTAGE_FOR`` seconds, the worker with the most pulls in flight as it
        begins. Its agent says so and its pulls stand still, as a real agent reports them."""
        since = now - self.start - OUTAGE_AFTER
        if since < 0 or since % OUTAGE_EVERY >= OUTAGE_FOR:
            return None
        index = int(since // OUTAGE_EVERY)
        if self._outage is None or self._outage[0] != index:
            busy = {n.name: 0 for n in self.nodes if not n.name.startswith("gpu")}
            for pull in self.pulls:
                if pull.node in busy and pull.active and pull.start <= now:
                    busy[pull.node] += 1
            if not busy:
                return None
            self._outage = (index, max(sorted(busy), key=lambda name: busy[name]))
        return self._outage[1]

    def _arrivals(self, now: float) -> None:
        weights = [image.weight for image in CATALOG]
        while self._next_arrival <= now:
            node = self.rng.choice(self.nodes)
            image = self.rng.choices(CATALOG, weights)[0]
            busy = any(p.active and p.node == node.name and p.image is image for p in self.pulls)
            if not busy and node.name != self.down(self._next_arrival):
                self._start(node, image, self._next_arrival)
            self._next_arrival += self.rng.expovariate(self.rate)

    def _advance(self, now: float, dt: float) -> None:
        down = self.down(now)
        for node in self.nodes:
            node.wander = min(1.4, max(0.35, node.wander * self.rng.uniform(0.88, 1.12)))
            active = [p for p in self.pulls if p.active and p.node == node.name]
            if node.name == down:
                for pull in active:
                    pull.speed = 0.0
                    for layer in pull.layers:
                        layer.speed = 0.0
                continue
            if not active:
                continue
            share = node.bandwidth * node.wander / len(active)
            for pull in active:
                self._download(node, pull, share * self.rng.uniform(0.85, 1.15), now, dt)

    def _download(self, node: _Node, pull: _Pull, rate: float, now: float, dt: float) -> None:
        # A pull that started before ``now - dt`` (the opening scene) only moves from its start.
        elapsed = min(dt, now - pull.start)
        if elapsed <= 0:
            return
        pending = [la for la in pull.layers if not la.cached and la.completed is None]
        running = pending[:CONCURRENT_LAYERS]
        moved = 0
        for layer in running:
            if layer.started is None:
                layer.started = max(pull.start, now - elapsed)
            step = int(rate * elapsed / len(running))
            layer.offset = min(layer.size, layer.offset + step)
            layer.speed = step / elapsed
            moved += step
            if layer.offset >= layer.size:
                layer.completed, layer.speed = now, 0.0
                node.store.add(layer.digest)
        pull.speed = moved / elapsed if running else 0.0
        total = sum(layer.size for layer in pull.layers if not layer.cached)
        done = sum(layer.offset for layer in pull.layers if not layer.cached)
        if pull.fail_at is not None and total and done / total >= pull.fail_at:
            broken = next((la for la in running if la.completed is None), running[0])
            pull.error = (
                f"download of layer {short_digest(broken.digest)} was aborted "
                f"at {broken.offset} of {broken.size} bytes"
            )
            pull.end, pull.speed = now, 0.0
            for layer in running:
                layer.speed = 0.0
        elif all(layer.cached or layer.completed is not None for layer in pull.layers):
            pull.end, pull.speed = now, 0.0


# -- the days before the demo (issue 12: history, stats and image updates) ----------------------


def past_pulls(
    seed: int, nodes: list[str], until: float, days: float = 7.0, per_hour: float = 6.0
) -> list[PullStatus]:
    """Finished pulls of the catalogue over the ``days`` before ``until``, so that a demo's
    history and stats have something to show: a fixed-size image takes longer on a slow node,
    cached base layers shorten a pull, and about one in thirty fails. A pure function of its
    arguments, with its own random stream (the live cluster's is untouched)."""
    rng = random.Random(f"past-{seed}")
    speeds = {name: rng.uniform(28, 40) if name.startswith("gpu") else rng.uniform(4, 16)
              for name in nodes}  # fmt: skip
    weights = [image.weight for image in CATALOG]
    out: list[PullStatus] = []
    t = until - days * 86400
    serial = 0
    while nodes:
        t += rng.expovariate(per_hour / 3600)
        if t >= until:
            break
        node = rng.choice(nodes)
        image = rng.choices(CATALOG, weights)[0]
        layers = image.layers()
        cached_count = rng.randrange(len(image.base.sizes) + 1) if image.base else 0
        total = sum(size for _, size, _ in layers)
        cached = sum(size for _, size, _ in layers[:cached_count])
        speed = speeds[node] * MiB * rng.uniform(0.6, 1.3)
        seconds = 0.4 + (total - cached) / speed
        failed = rng.random() < 1 / 30
        done = datetime.fromtimestamp(t, UTC)
        serial += 1
        downloaded = int((total - cached) * (rng.uniform(0.1, 0.9) if failed else 1.0))
        out.append(
            PullStatus(
                id=f"past-{seed}-{serial}",
                node_name=node,
                image_ref=image.ref,
                repository=image.repository,
                manifest_digest=image.manifest_digest,
                phase="failed" if failed else "completed",
                total_bytes=total,
                downloaded_bytes=downloaded,
                cached_bytes=cached,
                percent=100.0 if not failed else 100.0 * (downloaded + cached) / total,
                eta_seconds=None if failed else 0.0,
                layer_count=len(layers),
                layers_done=len(layers) if not failed else cached_count,
                layers_cached=cached_count,
                started_at=datetime.fromtimestamp(t - seconds, UTC),
                completed_at=done,
                error="failed to copy: httpReadSeeker: failed open: unexpected status code 503"
                if failed
                else "",
                pods=[PodRef(namespace=image.namespace, pod_name=f"{image.workload}-{serial:05x}")],
                total_known=True,
            )
        )
    return out


def diun_notices(seed: int, now: float) -> list[DiunNotification]:
    """Two images of the catalogue with a newer version, as DIUN would post them."""
    rng = random.Random(f"diun-{seed}")
    picks = rng.sample([i for i in CATALOG if i.ref.startswith("docker.io/")], 2)
    return [
        DiunNotification(
            diun_version="4.28.0",
            hostname="diun",
            status="update",
            provider="kubernetes",
            image=image.ref,
            hub_link=f"https://hub.docker.com/r/{image.repository.removeprefix('docker.io/')}",
            mime_type="application/vnd.oci.image.index.v1+json",
            digest=_digest(image.ref, "next"),
            created=datetime.fromtimestamp(now - rng.uniform(3600, 86400), UTC),
            platform="linux/amd64",
            metadata={"pod_namespace": image.namespace, "pod_name": f"{image.workload}-0"},
        )
        for image in picks
    ]
