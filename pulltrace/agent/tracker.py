"""Turns containerd's anonymous ingests into named, per-image pulls with a lifecycle.

One ``poll`` costs one ``ListStatuses``; the content store is scanned only for digests we have
not seen, and existence checks for layers that finished between two polls are batched into one
``List``. Everything else is bookkeeping in memory.

Speeds are measured on containerd's clock, never on ours: containerd writes an ingest in 1 MiB
steps and stamps each with ``updated_at``, so bytes counted between two of *our* polls come in
whole MiB and a rate over them is off by up to 1 MiB per window. Instead every layer keeps its
stamped points (a ``Trajectory``), each poll adds all pulls' bytes up at one instant on
containerd's clock where every transferring layer's count is known, and a pull's speed is its
growth between such instants. One instant for the whole node makes the pulls' speeds add up to
the node's.

containerd 2.x (its transfer service) opens an ingest for every layer of a pull at once, and
its download slots are shared by all pulls on the node: a layer at 0 B while the slots are
taken is ``queued``, not downloading, and its start is when its bytes began to move.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pulltrace.agent.containerd import ContentClient, ContentStore, Ingest
from pulltrace.agent.manifests import Manifest, ManifestIndex
from pulltrace.model import ACTIVE_PHASES, LayerStatus, Phase, PullStatus
from pulltrace.rate import RateWindow, Trajectory
from pulltrace.render import short_digest
from pulltrace.rollup import rollup, share

LayerState = Literal["pending", "queued", "active", "done", "cached", "failed"]
_TERMINAL_LAYER: frozenset[LayerState] = frozenset({"done", "cached", "failed"})
_REF_KINDS = {
    "layer": "",
    "manifest": "application/vnd.oci.image.manifest.v1+json",
    "index": "application/vnd.oci.image.index.v1+json",
    "config": "application/vnd.oci.image.config.v1+json",
}

_METADATA_TYPES = frozenset(t for t in _REF_KINDS.values() if t)

COPY_BUFFER = 1 << 20
"""containerd copies a download into its ingest in writes of this size (its copy buffer, the
same from 1.6 to 2.1), except the last write when the copy ends: at the end of the blob, or
at an error."""
_ALIGNED_TO_TRUST = 3  # aligned in-progress offsets seen before a ragged one means "broke off"


def ingest_digest(ingest: Ingest) -> str:
    """containerd names fetch ingests ``<kind>-[<name>@]<digest>`` (remotes.MakeRefKey).

    ``expected`` would be the reliable source, but containerd 1.6 leaves it empty for fetches.
    """
    if ingest.expected:
        return ingest.expected
    kind, _, rest = ingest.ref.partition("-")
    digest = rest.rpartition("@")[2]
    return digest if kind in _REF_KINDS and ":" in digest else ingest.ref


def shares_download_slots(version: str) -> bool:
    """containerd 2.x pulls through its transfer service, whose download slots are the node's,
    shared by all pulls; 1.x gives each pull its own (``version`` as the Version call says)."""
    major = version.removeprefix("v").split(".", 1)[0]
    return major.isdigit() and int(major) >= 2


@dataclass(slots=True)
class _Layer:
    digest: str
    media_type: str
    total: int
    state: LayerState = "pending"
    offset: int = 0
    queued_seen: float | None = None  # the last poll that found it waiting for a slot
    started_at: datetime | None = None  # when its bytes began to move
    completed_at: datetime | None = None
    rate: RateWindow = field(default_factory=RateWindow)
    bytes: Trajectory = field(default_factory=Trajectory)
    vanished_at: float | None = None  # monotonic time its ingest was first missed, blob unlisted
    steps: int = 0  # stamped points seen, for its usual time between steps
    ingest: Ingest | None = None  # as last seen

    @property
    def downloading(self) -> bool:
        return self.state == "active"

    def moved(self, t: float, offset: int) -> None:
        """A point containerd stamped; the first one is the layer's start at 0 bytes."""
        if not self.bytes:
            start = self.started_at.timestamp() if self.started_at else t
            self.bytes.add(start, 0)
            self.rate.add(start, 0)
        if self.bytes.last != (t, offset):
            self.steps += 1
        self.bytes.add(t, offset)
        self.rate.add(t, offset)

    def status(self) -> LayerStatus:
        done = self.state in ("done", "cached")
        progress = self.total if done else min(self.offset, self.total)
        # Never past a known total: an ingest can outgrow what the manifest says (a registry
        # that serves a different blob), and the collector refuses such a report whole.
        downloaded = progress if self.total > 0 else self.offset
        if self.state == "cached":
            downloaded = 0
        speed = self.rate.rate() if self.downloading else 0.0
        return LayerStatus(
            digest=self.digest,
            media_type=self.media_type,
            total_bytes=self.total,
            downloaded_bytes=downloaded,
            bytes_per_sec=speed,
            percent=100.0 if done else share(progress, self.total),
            started_at=self.started_at,
            completed_at=self.completed_at,
            cached=self.state == "cached",
            total_known=self.total > 0,
            queued=self.state == "queued",
        )


@dataclass(slots=True)
class _Pull:
    key: str
    id: str
    manifest: Manifest | None
    image_ref: str
    layers: dict[str, _Layer]
    started_at: datetime
    phase: Phase = "pulling"
    completed_at: datetime | None = None
    error: str = ""
    speed: float = 0.0
    percent: float = 0.0
    finished_at: float = 0.0

    def layers_are_metadata(self) -> bool:
        return all(layer.media_type in _METADATA_TYPES for layer in self.layers.values())

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES


def _counts(pulls: list[_Pull], t: float) -> dict[str, float]:
    """Each pull's bytes at ``t`` on containerd's clock."""
    return {p.key: sum(layer.bytes.at(t) for layer in p.layers.values()) for p in pulls}


def _ragged(offset: int, total: int) -> bool:
    return 0 < offset < total and offset % COPY_BUFFER != 0


def _pull_id(node: str, key: str, started: datetime) -> str:
    raw = f"{node}|{key}|{started.isoformat()}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


class Tracker:
    """Holds the pulls of one containerd namespace across polls."""

    def __init__(
        self,
        client: ContentStore,
        node_name: str,
        *,
        stall_timeout: float = 90.0,
        retain: float = 60.0,
        rate_window: float = 5.0,
        vanish_grace: float = 1.0,
        download_slots: int = 3,
        shared_slots: bool | None = None,
        sibling_stall: float = 10.0,
    ) -> None:
        """``download_slots`` is containerd's ``max_concurrent_downloads`` (more are learnt
        when seen downloading at once); ``shared_slots`` says whether they are shared by the
        node's pulls (containerd 2.x) rather than each pull's own (1.x); ``None`` asks the
        Version call on the first poll."""
        self.client = client
        self.node_name = node_name
        self.stall_timeout = stall_timeout
        self.vanish_grace = vanish_grace
        self.download_slots = download_slots
        self.shared_slots = shared_slots
        self.sibling_stall = sibling_stall
        self.retain = retain
        self.rate_window = rate_window
        self.index = ManifestIndex(client)
        self._pulls: dict[str, _Pull] = {}
        self._finished: list[_Pull] = []
        # Ingests left behind by a download that stalled or died: ignored until they move again.
        self._dead: dict[str, datetime] = {}
        # Every active pull's bytes at common instants on containerd's clock, oldest first.
        self._samples: deque[tuple[float, dict[str, float]]] = deque()
        # When downloaded layers were committed (containerd's clock): each freed a slot.
        self._commits: deque[float] = deque(maxlen=64)
        self._holders: set[str] = set()  # layers at 0 B that hold one of the node's slots
        # Whether this containerd writes in COPY_BUFFER steps, as far as we have seen: only
        # then is a ragged offset a copy that ended.
        self._aligned = 0
        self._ragged_moved = False
        self._last_poll: float | None = None

    def poll(self) -> list[PullStatus]:
        """One sample of the content store; raises ContainerdError when it cannot be read."""
        if self.shared_slots is None and isinstance(self.client, ContentClient):
            self.shared_slots = shares_download_slots(self.client.check())
        ingests = self.client.list_statuses()
        return self.apply(ingests, datetime.now(UTC), time.monotonic())

    def apply(self, ingests: list[Ingest], now: datetime, mono: float) -> list[PullStatus]:
        live = self._live_ingests(ingests, now)
        self.index.resolve(live, mono)
        for digest, ingest in live.items():
            owners = self.index.owners(digest)
            if owners:
                for manifest_digest in sorted(owners):
                    self._manifest_pull(manifest_digest, ingest, now)
            elif not self.index.is_manifest(digest):
                self._resolving_pull(digest, ingest, now)
        self._advance(live, now, mono)
        self._measure(now.timestamp())
        self._finished = [p for p in self._finished if mono - p.finished_at < self.retain]
        self._last_poll = now.timestamp()
        return self.statuses()

    def statuses(self) -> list[PullStatus]:
        pulls = list(self._pulls.values()) + self._finished
        return [self._status(p) for p in sorted(pulls, key=lambda p: p.started_at)]

    def _live_ingests(self, ingests: list[Ingest], now: datetime) -> dict[str, Ingest]:
        live: dict[str, Ingest] = {}
        refs = {i.ref for i in ingests}
        for ref in list(self._dead):
            if ref not in refs:
                del self._dead[ref]
        tracked = {d for p in self._pulls.values() for d in p.layers}
        for ingest in ingests:
            dead_at = self._dead.get(ingest.ref)
            if dead_at is not None and ingest.updated_at <= dead_at:
                continue
            self._dead.pop(ingest.ref, None)
            digest = ingest_digest(ingest)
            idle = (now - ingest.updated_at).total_seconds()
            if digest not in tracked and idle > self.stall_timeout:
                # Leftovers of downloads that died before we were watching.
                self._dead[ingest.ref] = ingest.updated_at
                continue
            live[digest] = ingest
        return live

    def _manifest_pull(self, manifest_digest: str, ingest: Ingest, now: datetime) -> None:
        if manifest_digest in self._pulls:
            return
        manifest = self.index.manifest(manifest_digest)
        if manifest is None:
            return
        index_digest = self.index.index_of(manifest_digest)
        image_ref = (
            f"{manifest.repository}@{index_digest or manifest.digest}"
            if manifest.repository
            else ""
        )
        layers = {
            layer.digest: _Layer(
                layer.digest, layer.media_type, layer.size, rate=RateWindow(self.rate_window)
            )
            for layer in manifest.layers
        }
        present = self._present([d for d in layers if d != ingest_digest(ingest)])
        for digest, committed in present.items():
            layer = layers[digest]
            if committed < manifest.committed_at:
                layer.state = "cached"
            else:
                # Downloaded by this pull before our first look at it, after its manifest.
                self._committed(layer, committed, manifest.committed_at.timestamp())
        pull_id, started = self._start(manifest_digest, ingest, now)
        pull = _Pull(
            key=manifest_digest,
            id=pull_id,
            manifest=manifest,
            image_ref=image_ref,
            layers=layers,
            started_at=started,
        )
        self._pulls[manifest_digest] = pull

    def _resolving_pull(self, digest: str, ingest: Ingest, now: datetime) -> None:
        key = f"ingest:{ingest.ref}"
        if key in self._pulls:
            return
        media_type = _REF_KINDS.get(ingest.ref.partition("-")[0], "")
        layer = _Layer(digest, media_type, ingest.total, rate=RateWindow(self.rate_window))
        pull_id, started = self._start(key, ingest, now)
        self._pulls[key] = _Pull(
            key=key,
            id=pull_id,
            manifest=None,
            image_ref="",
            layers={digest: layer},
            started_at=started,
            phase="resolving",
        )

    def _start(self, key: str, ingest: Ingest, now: datetime) -> tuple[str, datetime]:
        """The pull's id and start: containerd's own start time, so an agent restart keeps the
        id; but a download resumed after a failed pull is a new pull that starts now."""
        started = ingest.started_at
        if any(p.key == key for p in self._finished):
            started = max(now, started)
        return _pull_id(self.node_name, key, started), started

    def _present(self, digests: list[str]) -> dict[str, datetime]:
        """Which of these blobs are committed, with their commit times, in one List call."""
        if not digests:
            return {}
        infos = self.client.list(f'digest=="{d}"' for d in digests)
        return {i.digest: i.created_at for i in infos}

    def _advance(self, live: dict[str, Ingest], now: datetime, mono: float) -> None:
        missing = {
            d
            for p in self._pulls.values()
            for d, layer in p.layers.items()
            if layer.state not in _TERMINAL_LAYER and d not in live
        }
        present = self._present(sorted(missing))
        self._count_slots(live)
        # Commits first: a layer that leaves the queue in this poll starts at the first of them.
        for pull in self._pulls.values():
            for digest, layer in pull.layers.items():
                if layer.state in _TERMINAL_LAYER or digest in live:
                    continue
                if digest in present:
                    since = self._last_poll or pull.started_at.timestamp()
                    self._committed(layer, present[digest], since)
                elif layer.state == "active":
                    self._vanished(pull, layer, mono)
        for pull in list(self._pulls.values()):
            for digest, layer in pull.layers.items():
                ingest = live.get(digest)
                if ingest is not None and layer.state not in _TERMINAL_LAYER:
                    self._advance_layer(pull, layer, ingest, now)
            self._stopped(pull, now.timestamp())
            self._settle(pull, live, now, mono)

    def _count_slots(self, live: dict[str, Ingest]) -> None:
        """With the node's slots shared (see __init__), which layers at 0 B hold one: the
        slots the layers with bytes leave free go to those already holding one, then to the
        longest waiting (containerd 2.x hands them out in that order)."""
        self._holders.clear()
        if not self.shared_slots:
            return
        layers = {
            d: layer
            for p in self._pulls.values()
            for d, layer in p.layers.items()
            if d in live and layer.state not in _TERMINAL_LAYER
        }
        moving = sum(1 for d in layers if live[d].offset > 0)
        self.download_slots = max(self.download_slots, moving)
        waiting = sorted(
            (d for d in layers if live[d].offset == 0),
            key=lambda d: (layers[d].state != "active", live[d].started_at),
        )
        self._holders.update(waiting[: self.download_slots - moving])

    def _committed(self, layer: _Layer, at: datetime, since: float) -> None:
        """The layer's blob is in the store. A layer whose bytes we never saw move is taken to
        have come in evenly since ``since`` (our previous poll, or its manifest's commit)."""
        end = at.timestamp()
        if not layer.bytes:
            start = layer.started_at.timestamp() if layer.started_at else since
            layer.bytes.add(min(start, end - 1e-3), 0)
        layer.bytes.add(end, layer.total)
        if layer.started_at is None:
            layer.started_at = datetime.fromtimestamp(layer.bytes.first, UTC)
        layer.state, layer.offset, layer.completed_at = "done", layer.total, at
        self._commits.append(end)

    def _vanished(self, pull: _Pull, layer: _Layer, mono: float) -> None:
        """An ingest that is gone while its blob is not listed was aborted, or was committed
        between our ListStatuses and our List: containerd removes the ingest and lists the blob
        in two steps. Only a blob still absent ``vanish_grace`` seconds later, re-checked on a
        later poll, is a failure."""
        if layer.vanished_at is None:
            layer.vanished_at = mono
            return
        if mono - layer.vanished_at < self.vanish_grace:
            return
        layer.state = "failed"
        pull.error = pull.error or (
            f"download of layer {short_digest(layer.digest)} was aborted "
            f"at {layer.offset} of {layer.total} bytes"
        )

    def _stopped(self, pull: _Pull, now: float) -> None:
        """Failures visible before the ingests go (containerd 2.x drops a failed pull's
        ingests with its lease, which on a busy node can wait for garbage collection). Two
        signs: a copy that ended early (a ragged offset short of the total)
        while none of the pull's layers moves; and a layer that stopped while all its siblings
        finished, for far longer than it ever took to move a step."""
        if pull.error:
            return
        layers = [layer for layer in pull.layers.values() if layer.state != "cached"]
        moved = [last[0] for layer in layers if (last := layer.bytes.last) is not None]
        quiet = now - max(moved, default=now)
        trusted = self._aligned >= _ALIGNED_TO_TRUST and not self._ragged_moved
        for layer in layers:
            if layer.state != "active":
                continue
            if trusted and quiet >= self.vanish_grace and _ragged(layer.offset, layer.total):
                self._fail(pull, layer, f"broke off at {layer.offset} of {layer.total} bytes")
                return
            started = layer.started_at
            siblings = [s for s in layers if s is not layer]
            if started is None or not siblings or any(s.state != "done" for s in siblings):
                continue
            last = layer.bytes.last
            since = last[0] if last else started.timestamp()
            if layer.steps:
                usual = (since - started.timestamp()) / layer.steps
            elif pull.speed > 0:  # no step of its own yet: one at the pull's pace
                usual = COPY_BUFFER / pull.speed
            else:
                continue
            idle = now - since
            if idle > max(self.sibling_stall, 10 * usual):
                what = f"stopped for {idle:.0f}s at {layer.offset} of {layer.total} bytes"
                self._fail(pull, layer, what + " while the rest of the image finished")
                return

    def _fail(self, pull: _Pull, layer: _Layer, what: str) -> None:
        """Its ingest is left alone from now on, unless it moves again (a new pull)."""
        layer.state = "failed"
        if layer.ingest is not None:
            self._dead[layer.ingest.ref] = layer.ingest.updated_at
        pull.error = pull.error or f"download of layer {short_digest(layer.digest)} {what}"

    def _advance_layer(self, pull: _Pull, layer: _Layer, ingest: Ingest, now: datetime) -> None:
        layer.vanished_at, layer.ingest = None, ingest
        opened = ingest.started_at.timestamp()
        if ingest.offset > layer.offset and _ragged(layer.offset, layer.total):
            self._ragged_moved = True  # not a copy that ended: offsets here are not in steps
        elif ingest.offset != layer.offset and 0 < ingest.offset < layer.total:
            self._aligned += ingest.offset % COPY_BUFFER == 0
        layer.offset = ingest.offset
        if ingest.total > 0:
            layer.total = ingest.total
        if ingest.offset == 0 and self.shared_slots and layer.digest not in self._holders:
            # waiting for a slot (or, at 0 B, found to have been waiting all along)
            layer.state, layer.queued_seen, layer.started_at = "queued", now.timestamp(), None
            return
        if layer.state in ("pending", "queued"):
            layer.started_at = datetime.fromtimestamp(self._first_byte(layer, opened), UTC)
            layer.state = "active"
        if ingest.offset > 0:
            layer.moved(ingest.updated_at.timestamp(), ingest.offset)
        idle = (now - max(ingest.updated_at, layer.started_at or ingest.updated_at)).total_seconds()
        if idle > self.stall_timeout:
            what = f"stalled for {idle:.0f}s at {ingest.offset} of {layer.total} bytes"
            self._fail(pull, layer, what)

    def _first_byte(self, layer: _Layer, opened: float) -> float:
        """When a layer's bytes began to move: when its ingest opened, or, if it waited in the
        queue, when the first slot after our last sight of it waiting was freed."""
        if layer.state != "queued" or layer.queued_seen is None:
            return opened
        waited = layer.queued_seen
        return min((t for t in self._commits if t >= waited), default=waited)

    def _measure(self, now: float) -> None:
        """Samples every active pull's bytes at the latest instant at which each downloading
        layer's count is known (its last stamped step; a layer that has not finished its first
        MiB is known only up to its start), and sets each pull's speed from those samples."""
        active = [p for p in self._pulls.values() if p.active]
        if not active:
            self._samples.clear()
            return
        layers = {d: layer for p in active for d, layer in p.layers.items()}
        known: list[float] = []
        for layer in layers.values():
            if layer.state != "active":
                continue
            last = layer.bytes.last
            if last is not None:
                known.append(last[0])
            elif layer.started_at is not None:
                start = layer.started_at.timestamp()
                # past the rate window it is stuck, not about to step: its bytes are ~0
                if now - start <= self.rate_window:
                    known.append(start)
        instant = min(known, default=now)
        samples = self._samples
        if not samples:
            starts = [layer.bytes.first for layer in layers.values() if layer.bytes]
            if starts and min(starts) < instant:
                samples.append((min(starts), {}))
        if not samples or instant > samples[-1][0]:
            samples.append((instant, _counts(active, instant)))
            for layer in layers.values():
                layer.bytes.forget_before(instant)
        while len(samples) > 2 and samples[1][0] <= instant - self.rate_window:
            samples.popleft()
        (t0, before), (t1, after) = samples[0], samples[-1]
        if t1 <= t0:
            # Nothing measured yet: until every downloading layer has stamped its first step,
            # count the layers that have, for the speed shown, but keep no sample of it.
            steps = [last[0] for x in layers.values() if x.downloading and (last := x.bytes.last)]
            t1 = min(steps, default=t0)
            after = _counts(active, t1)
        for p in active:
            grown = after.get(p.key, 0.0) - before.get(p.key, 0.0)
            p.speed = grown / (t1 - t0) if t1 > t0 and grown > 0 else 0.0

    def _settle(self, pull: _Pull, live: dict[str, Ingest], now: datetime, mono: float) -> None:
        layers = pull.layers.values()
        if any(layer.state == "failed" for layer in layers):
            pull.phase = "failed"
            pull.completed_at = now
        elif all(layer.state in ("done", "cached") for layer in layers):
            if pull.phase == "resolving" and pull.layers_are_metadata():
                # A manifest, index or config finished: the image's own pull takes over.
                del self._pulls[pull.key]
                return
            pull.phase = "completed"
            pull.completed_at = max(
                (layer.completed_at for layer in layers if layer.completed_at), default=now
            )
        if not pull.active:
            pull.finished_at = mono
            del self._pulls[pull.key]
            self._finished.append(pull)

    def _status(self, pull: _Pull) -> PullStatus:
        layers = [layer.status() for layer in pull.layers.values()]
        figures = rollup(
            pull.phase,
            layers,
            speed=pull.speed,
            started_at=pull.started_at,
            completed_at=pull.completed_at,
            floor=pull.percent,
        )
        pull.percent = figures.percent
        manifest = pull.manifest
        return PullStatus(
            id=pull.id,
            node_name=self.node_name,
            image_ref=pull.image_ref,
            repository=manifest.repository if manifest else "",
            manifest_digest=manifest.digest if manifest else "",
            phase=pull.phase,
            started_at=pull.started_at,
            completed_at=pull.completed_at,
            error=pull.error,
            layers=layers,
            **figures.fields(),
        )
