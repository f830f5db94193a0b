from __future__ import annotations

import os
from datetime import timedelta

import pytest

from pulltrace.agent.containerd import Ingest
from pulltrace.agent.tracker import Tracker, ingest_digest, shares_download_slots
from pulltrace.model import AgentReport, PullStatus, report_problem
from tests.fakestore import T0, FakeStore, digest_of


def blob(size: int) -> bytes:
    return os.urandom(size)


class Clock:
    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.mono = 1000.0

    def poll(self, tracker: Tracker, seconds: float = 1.0) -> list[PullStatus]:
        self.store.tick(seconds)
        self.mono += seconds
        return tracker.apply(self.store.list_statuses(), self.store.now, self.mono)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


def by_repo(pulls: list[PullStatus]) -> dict[str, PullStatus]:
    return {p.repository: p for p in pulls}


def test_two_concurrent_images_are_two_pulls_with_totals_known_at_once(store: FakeStore) -> None:
    a_layers, b_layers = [blob(3000), blob(5000)], [blob(7000)]
    a = store.push_manifest(a_layers, "team/a")
    b = store.push_manifest(b_layers, "team/b")
    store.write(f"layer-{digest_of(a_layers[0])}", 100, 3000)
    store.write(f"layer-{digest_of(b_layers[0])}", 200, 7000)
    pulls = by_repo(Clock(store).poll(Tracker(store, "n1")))
    assert set(pulls) == {"reg.local:5000/team/a", "reg.local:5000/team/b"}
    assert pulls["reg.local:5000/team/a"].manifest_digest == a
    assert pulls["reg.local:5000/team/a"].total_bytes == 8000
    assert pulls["reg.local:5000/team/a"].image_ref == f"reg.local:5000/team/a@{a}"
    assert pulls["reg.local:5000/team/b"].manifest_digest == b
    assert pulls["reg.local:5000/team/b"].total_bytes == 7000
    assert all(p.phase == "pulling" and p.total_known for p in pulls.values())
    assert len({p.id for p in pulls.values()}) == 2


def test_layers_already_in_store_are_cached(store: FakeStore) -> None:
    shared = blob(4000)
    store.commit(shared)
    store.tick(10)
    new = blob(1000)
    store.push_manifest([shared, new], "app")
    store.write(f"layer-{digest_of(new)}", 10, 1000)
    (pull,) = Clock(store).poll(Tracker(store, "n1"))
    assert pull.cached_bytes == 4000
    assert pull.layers_cached == 1
    assert pull.layers_done == 1
    assert [layer.cached for layer in pull.layers] == [True, False]
    assert pull.percent == pytest.approx(100 * 4010 / 5000)


def test_pull_completes_when_all_layers_are_committed(store: FakeStore) -> None:
    layers = [blob(1000), blob(2000)]
    store.push_manifest(layers, "app")
    clock, tracker = Clock(store), Tracker(store, "n1")
    store.write(f"layer-{digest_of(layers[0])}", 500, 1000)
    clock.poll(tracker)
    store.commit(layers[0])
    store.write(f"layer-{digest_of(layers[1])}", 100, 2000)
    (pull,) = clock.poll(tracker)
    assert pull.phase == "pulling" and pull.layers_done == 1
    store.commit(layers[1])
    (pull,) = clock.poll(tracker)
    assert pull.phase == "completed"
    assert pull.percent == 100.0
    assert pull.downloaded_bytes == 3000 and pull.cached_bytes == 0
    assert pull.completed_at == store.blobs[digest_of(layers[1])][2]
    assert pull.eta_seconds == 0.0


def test_small_layer_finished_between_polls_counts_as_downloaded(store: FakeStore) -> None:
    layers = [blob(1000), blob(2000)]
    store.push_manifest(layers, "app")
    store.tick(1)
    store.commit(layers[0])
    store.write(f"layer-{digest_of(layers[1])}", 100, 2000)
    (pull,) = Clock(store).poll(Tracker(store, "n1"))
    assert pull.layers_cached == 0
    assert pull.downloaded_bytes == 1100


def vanishing(store: FakeStore) -> tuple[Clock, Tracker, bytes, str]:
    """One layer seen at 400 of 1000 bytes, whose ingest is then gone."""
    layer = blob(1000)
    store.push_manifest([layer], "app")
    clock, tracker = Clock(store), Tracker(store, "n1", vanish_grace=1.0)
    ref = f"layer-{digest_of(layer)}"
    store.write(ref, 400, 1000)
    clock.poll(tracker)
    del store.ingests[ref]
    return clock, tracker, layer, ref


def test_vanished_ingest_without_blob_fails_the_pull_once_confirmed(store: FakeStore) -> None:
    clock, tracker, _, _ = vanishing(store)
    (pull,) = clock.poll(tracker, 0.5)
    assert pull.phase == "pulling", "one poll that misses the ingest is not yet a failure"
    (pull,) = clock.poll(tracker, 0.9)
    assert pull.phase == "pulling", "still within the grace after the first miss"
    (pull,) = clock.poll(tracker, 0.2)
    assert pull.phase == "failed"
    assert "aborted at 400 of 1000 bytes" in pull.error
    assert pull.eta_seconds is None


def test_blob_listed_after_its_ingest_vanished_completes_the_pull(store: FakeStore) -> None:
    """containerd drops the ingest before it lists the committed blob; a poll in between must
    not fail the pull."""
    clock, tracker, layer, _ = vanishing(store)
    phases = [p.phase for p in clock.poll(tracker, 0.1)]
    phases += [p.phase for p in clock.poll(tracker, 0.1)]
    store.commit(layer)
    (pull,) = clock.poll(tracker, 5.0)
    assert phases == ["pulling", "pulling"]
    assert pull.phase == "completed" and not pull.error


def test_an_ingest_that_comes_back_is_no_longer_vanishing(store: FakeStore) -> None:
    clock, tracker, _, ref = vanishing(store)
    clock.poll(tracker, 0.9)
    store.write(ref, 500, 1000)
    clock.poll(tracker, 0.5)
    del store.ingests[ref]
    (pull,) = clock.poll(tracker, 0.5)
    assert pull.phase == "pulling", "the grace starts again from the second disappearance"


def test_stalled_ingest_fails_once_then_a_resumed_download_is_a_new_pull(store: FakeStore) -> None:
    layers = [blob(1000)]
    store.push_manifest(layers, "app")
    clock, tracker = Clock(store), Tracker(store, "n1", stall_timeout=5)
    ref = f"layer-{digest_of(layers[0])}"
    store.write(ref, 400, 1000)
    (first,) = clock.poll(tracker)
    for _ in range(4):  # idle 2..5 s: not yet past the 5 s timeout
        (pull,) = clock.poll(tracker)
        assert pull.phase == "pulling"
    (pull,) = clock.poll(tracker)
    assert pull.phase == "failed" and "stalled" in pull.error and pull.id == first.id
    for _ in range(3):
        assert [p.phase for p in clock.poll(tracker)] == ["failed"]
    store.write(ref, 600, 1000)
    pulls = clock.poll(tracker)
    assert [p.phase for p in pulls] == ["failed", "pulling"]
    assert pulls[1].id != first.id


def test_old_leftover_ingest_is_ignored(store: FakeStore) -> None:
    layers = [blob(1000)]
    store.push_manifest(layers, "app")
    store.write(f"layer-{digest_of(layers[0])}", 400, 1000)
    store.tick(3600)
    assert Clock(store).poll(Tracker(store, "n1")) == []


def test_unknown_ingest_is_its_own_resolving_pull_and_metadata_is_absorbed(
    store: FakeStore,
) -> None:
    clock, tracker = Clock(store), Tracker(store, "n1")
    orphan = blob(900)
    store.write(f"layer-{digest_of(orphan)}", 10, 900)
    manifest_ref = "manifest-sha256:" + "ab" * 32
    store.write(manifest_ref, 10, 500)
    pulls = clock.poll(tracker)
    assert [p.phase for p in pulls] == ["resolving", "resolving"]
    assert all(p.manifest_digest == "" for p in pulls)
    del store.ingests[manifest_ref]
    store.blobs["sha256:" + "ab" * 32] = (b"{}", {}, store.now)
    (pull,) = clock.poll(tracker)
    assert pull.layers[0].digest == digest_of(orphan)


def test_shared_ingest_shows_in_both_pulls(store: FakeStore) -> None:
    shared = blob(5000)
    store.push_manifest([shared, blob(10)], "one")
    store.push_manifest([shared, blob(20)], "two")
    store.write(f"layer-{digest_of(shared)}", 2500, 5000)
    pulls = Clock(store).poll(Tracker(store, "n1"))
    assert len(pulls) == 2
    assert all(p.downloaded_bytes == 2500 for p in pulls)


def test_speed_is_steady_across_layer_boundaries(store: FakeStore) -> None:
    layers = [blob(3000) for _ in range(4)]
    store.push_manifest(layers, "app")
    clock, tracker = Clock(store), Tracker(store, "n1")
    rate, done, speeds = 1000, 0, []
    for _ in range(11):
        index = min(done // 3000, 3)
        for i in range(index):
            store.commit(layers[i])
        store.write(f"layer-{digest_of(layers[index])}", done - 3000 * index, 3000)
        (pull,) = clock.poll(tracker)
        speeds.append(pull.bytes_per_sec)
        done += rate
    assert all(s == pytest.approx(1000, rel=0.01) for s in speeds[1:]), speeds


class Download:
    """Layers downloading at a fixed rate each, written in ``step``-byte writes stamped with the
    instant each completes, the way containerd writes 1 MiB at a time."""

    def __init__(self, store: FakeStore, layers: list[bytes], rate: float, step: int) -> None:
        self.store, self.layers, self.rate, self.step = store, layers, rate, step
        self.began = store.now

    def advance(self) -> None:
        elapsed = (self.store.now - self.began).total_seconds()
        for layer in self.layers:
            done = min(int(elapsed * self.rate), len(layer))
            stepped = done // self.step * self.step
            at = self.began + timedelta(seconds=stepped / self.rate)
            if done == len(layer):
                if digest_of(layer) not in self.store.blobs:
                    self.store.commit(layer, at=self.began + timedelta(seconds=done / self.rate))
            else:
                self.store.write(f"layer-{digest_of(layer)}", stepped, len(layer), at=at)


def test_speed_comes_from_containerds_stamps_not_from_when_we_polled(store: FakeStore) -> None:
    """Steps of 1000 B at 700 B/s per layer: polls 1 s apart see 0, 1 or 2 steps, yet every
    speed shown is the true 2 x 700 B/s."""
    layers = [blob(20_000), blob(20_000)]
    store.push_manifest(layers, "app")
    clock, tracker = Clock(store), Tracker(store, "n1")
    download = Download(store, layers, rate=700.0, step=1000)
    speeds = []
    for _ in range(12):
        store.tick(0.37)  # polls out of phase with the steps
        download.advance()
        (pull,) = clock.poll(tracker, 0.63)
        speeds.append(pull.bytes_per_sec)
    # nothing is known before containerd stamps the first step (at 1.43 s, seen by poll 3)
    assert speeds[:2] == [0.0, 0.0]
    assert all(s == pytest.approx(1400, rel=1e-6) for s in speeds[2:]), speeds


def test_two_pulls_speeds_add_up_to_the_node_rate(store: FakeStore) -> None:
    a, b = [blob(30_000)], [blob(30_000), blob(30_000)]
    store.push_manifest(a, "a")
    store.push_manifest(b, "b")
    clock, tracker = Clock(store), Tracker(store, "n1")
    downloads = [Download(store, a, 500.0, 1000), Download(store, b, 250.0, 1000)]
    for _ in range(10):
        for download in downloads:
            download.advance()
        pulls = by_repo(clock.poll(tracker, 0.9))
    assert pulls["reg.local:5000/a"].bytes_per_sec == pytest.approx(500, rel=1e-6)
    assert pulls["reg.local:5000/b"].bytes_per_sec == pytest.approx(500, rel=1e-6)


def opened_at_once(
    store: FakeStore, offsets: list[int], shared: bool = True
) -> tuple[Clock, Tracker, list[bytes], list[str], PullStatus]:
    """One pull whose layers' ingests are all open (as containerd 2.x opens them), at these
    offsets, polled once with 3 download slots."""
    layers = [blob(3000) for _ in offsets]
    store.push_manifest(layers, "app")
    clock = Clock(store)
    tracker = Tracker(store, "n1", download_slots=3, shared_slots=shared)
    refs = [f"layer-{digest_of(layer)}" for layer in layers]
    for ref, offset in zip(refs, offsets, strict=True):
        store.write(ref, offset, 3000)
    (pull,) = clock.poll(tracker)
    return clock, tracker, layers, refs, pull


def test_a_layer_waiting_for_a_shared_slot_is_queued_until_its_bytes_move(
    store: FakeStore,
) -> None:
    clock, tracker, layers, _, pull = opened_at_once(store, [1000, 1000, 1000, 0])
    assert [layer.queued for layer in pull.layers] == [False, False, False, True]
    assert pull.layers[3].started_at is None and pull.layers[3].bytes_per_sec == 0
    store.commit(layers[0])
    freed = store.now
    (pull,) = clock.poll(tracker)
    assert not any(layer.queued for layer in pull.layers)
    assert pull.layers[3].started_at == freed, "its start is when the slot was freed"


def test_at_0_bytes_no_more_layers_download_than_there_are_shared_slots(
    store: FakeStore,
) -> None:
    clock, tracker, _, refs, pull = opened_at_once(store, [0, 0, 0, 0])
    assert [layer.queued for layer in pull.layers] == [False, False, False, True]
    # the guess was wrong: the fourth got a slot, the third did not
    store.write(refs[3], 1000, 3000)
    (pull,) = clock.poll(tracker)
    assert sum(1 for layer in pull.layers if layer.queued) == 1
    assert not pull.layers[3].queued and pull.layers[3].started_at is not None
    assert sum(1 for layer in pull.layers if not layer.queued) == 3


@pytest.mark.parametrize(
    ("version", "shared"),
    [("1.6.20~ds1", False), ("1.7.24~ds1", False), ("2.1.9+unknown", True), ("v2.0.0", True)],
)
def test_containerd_2_shares_its_download_slots(version: str, shared: bool) -> None:
    assert shares_download_slots(version) is shared


def test_containerd_1_never_queues(store: FakeStore) -> None:
    """1.x opens an ingest only once one of the pull's slots is taken: at 0 B it downloads."""
    *_, pull = opened_at_once(store, [0, 0, 0, 1000, 1000], shared=False)
    assert not any(layer.queued for layer in pull.layers)


def test_more_layers_seen_downloading_at_once_than_slots_means_more_slots(
    store: FakeStore,
) -> None:
    _, tracker, _, _, pull = opened_at_once(store, [1000] * 4 + [0] * 2)
    assert tracker.download_slots == 4
    assert [layer.queued for layer in pull.layers] == [False] * 4 + [True] * 2


MiB = 1 << 20


def test_a_copy_that_ended_short_fails_the_pull_before_its_ingest_goes(store: FakeStore) -> None:
    """containerd 2.x leaves a failed pull's ingests until its next GC: the last write of a
    copy that broke off is not a whole 1 MiB step."""
    layers = [blob(3 * MiB), blob(3 * MiB)]
    store.push_manifest(layers, "app")
    clock, tracker = Clock(store), Tracker(store, "n1", vanish_grace=1.0)
    refs = [f"layer-{digest_of(layer)}" for layer in layers]
    for step in (1, 2):
        for ref in refs:
            store.write(ref, step * MiB, 3 * MiB)
        (pull,) = clock.poll(tracker, 0.5)
    store.write(refs[0], 2 * MiB + 1234, 3 * MiB)  # the error's partial write
    (pull,) = clock.poll(tracker, 0.5)
    assert pull.phase == "pulling", "within the grace"
    (pull,) = clock.poll(tracker, 0.6)
    assert pull.phase == "failed"
    assert pull.error.endswith(f"broke off at {2 * MiB + 1234} of {3 * MiB} bytes")


def test_ragged_offsets_that_move_on_are_not_a_broken_copy(store: FakeStore) -> None:
    layers = [blob(3 * MiB)]
    store.push_manifest(layers, "app")
    clock, tracker = Clock(store), Tracker(store, "n1", vanish_grace=1.0)
    ref = f"layer-{digest_of(layers[0])}"
    for offset in (MiB, 2 * MiB, 2 * MiB + 10, 2 * MiB + 500_000):
        store.write(ref, offset, 3 * MiB)
        (pull,) = clock.poll(tracker, 0.5)
    for _ in range(3):
        (pull,) = clock.poll(tracker, 1.0)
    assert pull.phase == "pulling"


def test_a_layer_stopped_while_its_siblings_finished_fails(store: FakeStore) -> None:
    layers = [blob(2000), blob(5000)]
    store.push_manifest(layers, "app")
    clock, tracker = Clock(store), Tracker(store, "n1", sibling_stall=10.0)
    refs = [f"layer-{digest_of(layer)}" for layer in layers]
    for offset in (1000, 2000):
        store.write(refs[1], offset, 5000)
        store.write(refs[0], offset - 1000, 2000)
        clock.poll(tracker)
    store.commit(layers[0])
    phases = [clock.poll(tracker)[0].phase for _ in range(10)]
    assert phases[:9] == ["pulling"] * 9 and phases[9] == "failed"
    (pull,) = clock.poll(tracker)
    assert "while the rest of the image finished" in pull.error


def test_a_last_layer_waits_for_its_first_step_at_the_pulls_pace(store: FakeStore) -> None:
    """A layer with no step of its own yet is expected to take a MiB at the pull's speed."""
    layers = [blob(2000), blob(5000)]
    store.push_manifest(layers, "app")
    clock, tracker = Clock(store), Tracker(store, "n1", sibling_stall=10.0)
    store.write(f"layer-{digest_of(layers[0])}", 1000, 2000)  # 1000 B/s
    clock.poll(tracker)
    store.commit(layers[0])
    store.write(f"layer-{digest_of(layers[1])}", 0, 5000)
    phases = [clock.poll(tracker)[0].phase for _ in range(30)]
    assert set(phases) == {"pulling"}, "1 MiB at 1000 B/s takes far longer than 30 s"


def test_one_poll_costs_one_list_statuses_once_manifests_are_known(store: FakeStore) -> None:
    layers = [blob(1000), blob(1000)]
    store.push_manifest(layers, "app")
    clock, tracker = Clock(store), Tracker(store, "n1")
    for i, layer in enumerate(layers):
        store.write(f"layer-{digest_of(layer)}", 10 * (i + 1), 1000)
    clock.poll(tracker)
    store.calls.clear()
    for n in range(3):
        for i, layer in enumerate(layers):
            store.write(f"layer-{digest_of(layer)}", 100 * (n + 1) + i, 1000)
        clock.poll(tracker)
    assert store.calls == ["ListStatuses"] * 3


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("layer-sha256:" + "a" * 64, "sha256:" + "a" * 64),
        ("layer-docker.io/library/nginx:1.25@sha256:" + "b" * 64, "sha256:" + "b" * 64),
        ("manifest-sha256:" + "c" * 64, "sha256:" + "c" * 64),
        ("upload-1234", "upload-1234"),
    ],
)
def test_ingest_digest_reads_plain_and_named_refs(ref: str, expected: str) -> None:
    ingest = Ingest(ref=ref, offset=0, total=0, expected="", started_at=T0, updated_at=T0)
    assert ingest_digest(ingest) == expected


def test_an_ingest_past_its_manifest_size_is_reported_at_the_known_total(
    store: FakeStore,
) -> None:
    """The collector refuses a report with bytes past a known total, so the agent must never
    send one, whatever the ingest says."""
    layers = [blob(1000), blob(2000)]
    store.push_manifest(layers, "app")
    store.write(f"layer-{digest_of(layers[0])}", 1500, 1000)  # a registry serving more
    store.write(f"layer-{digest_of(layers[1])}", 500, 2000)
    (pull,) = Clock(store).poll(Tracker(store, "n1"))
    report = AgentReport(node_name="n1", timestamp=store.now, pulls=[pull])
    assert report_problem(report) is None
    first = next(x for x in pull.layers if x.digest == digest_of(layers[0]))
    assert first.downloaded_bytes == first.total_bytes == 1000
