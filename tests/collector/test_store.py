"""Merge semantics of the store, driven directly with a clock that moves only when told to."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import msgspec
import pytest

from pulltrace.model import PodRef, PullEvent, PullList, PullStatus
from pulltrace.pullstore import PullStore
from tests.collector.conftest import (
    DIGEST,
    NGINX,
    T0,
    Clock,
    FakeCorrelator,
    layer,
    pull,
    replace_struct,
    report,
    resolving,
)

REDIS = "docker.io/library/redis"
OTHER = "sha256:" + "e" * 64


class Store:
    """A store with its clock and every event it emitted."""

    def __init__(self, correlator: FakeCorrelator | None = None, ttl: float = 60.0) -> None:
        self.clock = Clock()
        self.events: list[PullEvent] = []
        self.store = PullStore(
            ttl, correlator, clock=self.clock, progress_interval=0.5, stale_check_interval=0.0
        )
        self.store.add_listener(self.events.append)
        self.at = 0.0

    def send(
        self, node: str, *pulls: PullStatus, interval: float = 1.0, after: float = 1.0
    ) -> None:
        """One report, ``after`` seconds after the previous one on both clocks."""
        self.clock.advance(after)
        self.at += after
        self.store.apply_report(report(node, list(pulls), at=self.at, interval=interval))

    def tick(self, after: float = 0.0) -> None:
        self.clock.advance(after)
        self.store.tick()

    def types(self, pull_id: str | None = None) -> list[str]:
        return [e.type for e in self.events if pull_id is None or e.pull.id == pull_id]

    def ids(self) -> list[str]:
        return [p.id for p in self.store.pulls()]

    def one(self) -> PullStatus:
        (only,) = self.store.pulls()
        return only


def test_a_pull_keeps_its_id_across_reports_and_starts_once() -> None:
    s = Store()
    for done in (100, 300, 600):
        s.send("node-a", pull("a1", layers=[layer(0, done=done)]))
    assert s.ids() == ["a1"]
    assert s.types() == ["pull.started", "layer.started", "pull.progress", "pull.progress"]
    assert s.one().downloaded_bytes == 600
    assert s.events[-1].pull.downloaded_bytes == 600


def test_lifecycle_events_are_emitted_exactly_once_each() -> None:
    s = Store()
    s.send("node-a", pull("a1", layers=[layer(0, done=10), layer(1)]))
    s.send("node-a", pull("a1", layers=[layer(0, done=1000), layer(1, done=10)]))
    for _ in range(3):  # the agent keeps reporting a finished pull for a while
        s.send("node-a", pull("a1", layers=[layer(0, done=1000), layer(1, done=1000)]))
    counts = Counter(s.types())
    assert counts["pull.started"] == 1 and counts["pull.completed"] == 1
    assert counts["layer.started"] == 2 and counts["layer.completed"] == 2
    assert s.types()[0] == "pull.started" and s.types()[-1] == "pull.completed"
    done = s.one()
    assert done.phase == "completed" and done.percent == 100.0 and done.eta_seconds == 0.0
    layer_events = [(e.type, e.layer.digest) for e in s.events if e.layer is not None]
    assert len(set(layer_events)) == len(layer_events)


def test_a_pull_first_seen_finished_is_only_its_terminal_event() -> None:
    s = Store()
    done = pull("a1", layers=[layer(0, done=1000), layer(1, cached=True)])
    broken = pull(
        "b1", repo=REDIS, digest=OTHER, layers=[layer(0, done=10, pull="b")], phase="failed"
    )
    s.send("node-a", done, broken)
    s.send("node-a", done, broken)
    assert s.types() == ["pull.completed", "pull.failed"]
    assert s.events[0].pull.layers == done.layers
    assert s.events[0].pull.layers_done == 2


def test_layers_already_complete_when_first_seen_have_no_events() -> None:
    s = Store()
    first = [layer(0, done=1000), layer(1, done=10), layer(2), layer(3, cached=True)]
    s.send("node-a", pull("a1", layers=first))
    assert [(e.type, e.layer and e.layer.digest) for e in s.events] == [
        ("pull.started", None),
        ("layer.started", "sha256:p-layer-1"),
    ]
    assert s.events[0].pull.layers_done == 2
    last = [layer(0, done=1000), layer(1, done=1000), layer(2, done=1000), layer(3, cached=True)]
    s.send("node-a", pull("a1", layers=last))
    assert [(e.type, e.layer and e.layer.digest) for e in s.events[2:]] == [
        ("layer.completed", "sha256:p-layer-1"),
        ("layer.started", "sha256:p-layer-2"),
        ("layer.completed", "sha256:p-layer-2"),
        ("pull.completed", None),
    ]


def test_a_collector_restart_is_one_event_per_finished_pull() -> None:
    """Every agent's first report lists every pull it still holds."""
    s = Store()
    for n in range(20):
        node = f"node-{n}"
        finished = [
            pull(
                f"{node}-{k}",
                node=node,
                digest=f"sha256:{k:064d}",
                layers=[layer(i, done=1000, pull=f"{k}") for i in range(8)],
            )
            for k in range(5)
        ]
        active = pull(
            f"{node}-x",
            node=node,
            layers=[*(layer(i, done=1000) for i in range(6)), layer(6, done=5), layer(7)],
        )
        s.send(node, *finished, active, after=0.0)
    counts = Counter(s.types())
    assert counts == {"pull.completed": 100, "pull.started": 20, "layer.started": 20}


def test_an_agent_taking_over_kubelets_row_does_not_replay_finished_layers() -> None:
    corr = FakeCorrelator(kubelet=[kubelet("k1", "pulling")])
    s = Store(corr)
    s.tick()
    s.send("node-a", pull("a1", layers=[layer(0, done=1000), layer(1, done=10)]))
    assert s.ids() == ["k1"]
    assert [(e.type, e.layer and e.layer.digest) for e in s.events] == [
        ("pull.started", None),
        ("layer.started", "sha256:p-layer-1"),
    ]


def test_percent_never_moves_backwards_within_a_pull() -> None:
    s = Store()
    s.send("node-a", pull("a1", layers=[layer(0, total=1000, done=500)]))
    # A layer whose size the agent only learns later makes the agent's own figure drop.
    s.send("node-a", pull("a1", layers=[layer(0, total=1000, done=500), layer(1, total=500)]))
    assert s.one().percent == 50.0
    s.send("node-a", pull("a1", layers=[layer(0, total=1000, done=1000), layer(1, 500, 200)]))
    assert s.one().percent == pytest.approx(80.0)
    percents = [e.pull.percent for e in s.events]
    assert percents == sorted(percents)


def test_progress_is_coalesced_per_pull_and_flushed_by_the_tick() -> None:
    s = Store()
    s.send("node-a", pull("a1", layers=[layer(0, total=10_000, done=100)]))
    for done in (200, 300, 400):
        s.send("node-a", pull("a1", layers=[layer(0, total=10_000, done=done)]), after=0.1)
    s.tick()
    assert "pull.progress" not in s.types()
    s.tick(after=0.3)
    progress = [e for e in s.events if e.type == "pull.progress"]
    assert len(progress) == 1 and progress[0].pull.downloaded_bytes == 400
    s.tick(after=1.0)
    assert s.types().count("pull.progress") == 1  # nothing new to say


def test_resolving_pull_becomes_the_image_pull_without_a_new_id() -> None:
    s = Store()
    s.send("node-a", resolving("r1", blob=DIGEST))
    assert s.one().phase == "resolving" and s.one().percent == 0.0
    # The manifest is committed: the agent drops the ingest's pull and starts the image's.
    s.send("node-a", pull("a1", layers=[layer(0, total=1000, done=100)]))
    assert s.ids() == ["r1"]
    now = s.one()
    assert now.phase == "pulling" and now.manifest_digest == DIGEST and now.percent == 10.0
    assert s.types() == ["pull.started", "layer.started"]
    assert s.events[-1].pull.phase == "pulling"
    s.send("node-a", pull("a1", layers=[layer(0, total=1000, done=1000)]))
    assert s.types("r1")[-1] == "pull.completed"


def test_the_image_pulls_rate_does_not_count_the_resolving_blob() -> None:
    s = Store()
    s.send("node-a", resolving("r1", blob=DIGEST))  # 1200 bytes of a manifest
    for done in (100, 1100):
        s.send("node-a", pull("a1", layers=[layer(0, total=10_000, done=done)]))
    assert s.one().bytes_per_sec == pytest.approx(1000.0)


def test_resolving_index_is_continued_by_the_platform_manifest_pull() -> None:
    s = Store()
    index = "sha256:" + "1" * 64
    s.send("node-a", resolving("r1", blob=index))
    s.send("node-a", pull("a1", image_ref=f"{NGINX}@{index}"))
    assert s.ids() == ["r1"]


def test_resolving_pull_whose_image_never_follows_is_removed() -> None:
    s = Store()
    s.send("node-a", resolving("r1", blob=DIGEST))
    for _ in range(4):
        s.send("node-a")
        s.tick()
    assert s.ids() == []
    assert s.types() == ["pull.started", "pull.removed"]


def test_failed_then_resumed_download_is_a_new_pull() -> None:
    s = Store()
    s.send("node-a", pull("a1", layers=[layer(0, done=400)]))
    failed = pull("a1", layers=[layer(0, done=400)], phase="failed", error="layer aborted")
    s.send("node-a", failed)
    s.send("node-a", failed, pull("a2", layers=[layer(0, done=450)], started=T0 + timedelta(1)))
    assert s.ids() == ["a2", "a1"]
    assert s.store.get("a1").phase == "failed"  # type: ignore[union-attr]
    assert s.store.get("a1").error == "layer aborted"  # type: ignore[union-attr]
    assert s.types("a1") == ["pull.started", "layer.started", "pull.failed"]
    assert s.types("a2")[0] == "pull.started"


def test_finished_is_final_whatever_the_agent_says_next() -> None:
    s = Store()
    s.send("node-a", pull("a1", layers=[layer(0, done=1000)]))
    s.send("node-a", pull("a1", layers=[layer(0, done=10)], phase="pulling"))
    assert s.one().phase == "completed"
    assert s.types().count("pull.completed") == 1


def test_an_agent_restart_that_renames_a_pull_keeps_the_collector_id() -> None:
    s = Store()
    s.send("node-a", pull("a1", layers=[layer(0, done=100)]))
    s.send("node-a", pull("a9", layers=[layer(0, done=300)], started=T0 + timedelta(seconds=5)))
    assert s.ids() == ["a1"]
    assert s.one().downloaded_bytes == 300
    assert s.types().count("pull.started") == 1


def test_a_silent_node_has_its_active_pulls_marked_stale_not_completed() -> None:
    s = Store()
    s.send("node-a", pull("a1", layers=[layer(0, done=100)]), interval=1.0)
    s.send("node-b", pull("b1", node="node-b", layers=[layer(0, done=100)]), interval=10, after=0)
    s.tick(after=2.9)
    assert s.store.get("a1").phase == "pulling"  # type: ignore[union-attr]
    s.tick(after=0.2)
    stale = s.store.get("a1")
    assert stale is not None and stale.phase == "stale" and stale.eta_seconds is None
    assert s.store.get("b1").phase == "pulling"  # type: ignore[union-attr]
    assert [e.pull.phase for e in s.events if e.pull.id == "a1"][-1] == "stale"
    assert "pull.completed" not in s.types() and "pull.failed" not in s.types()
    assert s.store.connected_agents() == 1
    # The node comes back: the same pull carries on.
    s.send("node-a", pull("a1", layers=[layer(0, done=700)]))
    assert s.store.get("a1").phase == "pulling"  # type: ignore[union-attr]
    assert s.store.get("a1").percent == 70.0  # type: ignore[union-attr]
    assert s.types("a1").count("pull.started") == 1
    assert s.store.connected_agents() == 2


def test_finished_pulls_expire_after_the_ttl_and_clients_are_told() -> None:
    s = Store(ttl=30.0)
    s.send("node-a", pull("a1", layers=[layer(0, done=10)]), after=0.0)
    s.send("node-a", pull("a1", layers=[layer(0, done=1000)]))
    s.tick(after=29.0)
    assert s.ids() == ["a1"]
    s.tick(after=2.0)
    assert s.ids() == []
    assert s.types()[-1] == "pull.removed" and s.events[-1].pull.id == "a1"
    # The agent still lists it for a while: it must not come back.
    s.send("node-a", pull("a1", layers=[layer(0, done=1000)]))
    assert s.ids() == []
    assert s.types().count("pull.started") == 1


def test_stale_pulls_expire_after_the_ttl() -> None:
    s = Store(ttl=30.0)
    s.send("node-a", pull("a1", layers=[layer(0, done=100)]))
    s.tick(after=5.0)
    s.tick(after=31.0)
    assert s.ids() == []
    assert s.types()[-1] == "pull.removed"


def test_the_snapshot_leaves_out_the_layers_of_completed_and_failed_pulls() -> None:
    s = Store()
    s.send(
        "node-a",
        pull("done", digest=OTHER, layers=[layer(0, done=1000, pull="o")]),
        pull("bad", repo=REDIS, layers=[layer(0, done=5, pull="r")], phase="failed"),
        pull("act", digest="sha256:" + "f" * 64, layers=[layer(0, done=5, pull="x")]),
        pull("gone", node="node-a", digest="sha256:" + "9" * 64, layers=[layer(0, done=5)]),
    )
    s.send("node-a", pull("act", digest="sha256:" + "f" * 64, layers=[layer(0, 1000, 9, pull="x")]))
    s.tick(after=3.5)  # "gone" is no longer reported: stale
    held = {p.id: p for p in s.store.snapshot()}
    assert {k: len(p.layers) for k, p in held.items()} == {"done": 0, "bad": 0, "act": 1, "gone": 1}
    assert held["gone"].phase == "stale" and held["done"].layer_count == 1
    assert len(s.store.get("done").layers) == 1  # type: ignore[union-attr]
    assert [p.id for p in s.store.snapshot()] == s.ids()


def test_pulls_are_listed_active_first_then_newest() -> None:
    s = Store()
    s.send(
        "node-a",
        pull("old", digest=OTHER, layers=[layer(0, done=1000, pull="o")]),
        pull("new", repo=REDIS, layers=[layer(0, done=1000)], started=T0 + timedelta(60)),
        pull("act", digest="sha256:" + "f" * 64, layers=[layer(0, done=5, pull="x")]),
    )
    assert s.ids() == ["act", "new", "old"]


def test_rates_and_eta_come_from_the_collectors_window_over_report_times() -> None:
    s = Store()
    for second in range(3):
        done = 1000 * second
        status = pull("a1", layers=[layer(0, total=10_000, done=done)], bytes_per_sec=5.0)
        status = replace_struct(
            status, layers=[replace_struct(status.layers[0], started_at=T0, bytes_per_sec=5.0)]
        )
        s.send("node-a", status)
    current = s.one()
    assert current.bytes_per_sec == pytest.approx(1000.0)
    assert current.eta_seconds == pytest.approx(8.0)
    assert current.layers[0].bytes_per_sec == pytest.approx(1000.0)


def test_the_agents_rate_stands_in_until_there_are_two_samples() -> None:
    s = Store()
    s.send("node-a", pull("a1", layers=[layer(0, total=1000, done=100)], bytes_per_sec=50.0))
    assert s.one().bytes_per_sec == 50.0 and s.one().eta_seconds == pytest.approx(18.0)


# -- correlation ------------------------------------------------------------------------------

WEB = PodRef(namespace="shop", pod_name="web-0", container="nginx")


def kubelet(kid: str, phase: str, **kw: object) -> PullStatus:
    fields: dict[str, object] = {
        "id": kid,
        "node_name": "node-a",
        "repository": NGINX,
        "image_ref": f"{NGINX}:1.27",
        "phase": phase,
        "started_at": T0,
        "pods": [WEB],
    }
    fields.update(kw)
    return PullStatus(**fields)  # type: ignore[arg-type]


def test_match_fills_pods_and_the_tagged_reference() -> None:
    corr = FakeCorrelator(pods={("node-a", NGINX): ([WEB], f"{NGINX}:1.27")})
    s = Store(corr)
    s.send("node-a", pull("a1", layers=[layer(0, done=10)]))
    assert s.one().pods == [WEB] and s.one().image_ref == f"{NGINX}:1.27"
    assert s.events[0].pull.pods == [WEB]


def test_a_correlation_change_rematches_active_pulls_on_the_next_tick() -> None:
    corr = FakeCorrelator()
    s = Store(corr)
    s.send("node-a", pull("a1", layers=[layer(0, done=10)]))
    assert s.one().pods == []
    corr.pods[("node-a", NGINX)] = ([WEB], "")
    corr.changed()  # the correlator's own notification, as from its watch thread
    s.tick()
    assert s.one().pods == [WEB] and s.one().image_ref == f"{NGINX}@{DIGEST}"
    assert s.events[-1].type == "pull.progress" and s.events[-1].pull.pods == [WEB]


def test_a_kubelet_only_pull_is_its_own_row_with_the_same_lifecycle() -> None:
    corr = FakeCorrelator(kubelet=[kubelet("k1", "pulling", node_name="node-b")])
    s = Store(corr)
    s.tick()
    assert s.ids() == ["k1"] and s.one().node_name == "node-b"
    corr.kubelet = [kubelet("k1", "failed", node_name="node-b", error="ErrImagePull: not found")]
    s.store.correlation_changed()
    s.tick()
    assert s.one().phase == "failed" and s.one().error == "ErrImagePull: not found"
    assert s.types() == ["pull.started", "pull.failed"]


def test_an_agent_pull_takes_over_kubelets_row_and_keeps_its_id() -> None:
    corr = FakeCorrelator(kubelet=[kubelet("k1", "pulling")])
    s = Store(corr)
    s.tick()
    s.send("node-a", pull("a1", layers=[layer(0, done=10)]))
    assert s.ids() == ["k1"]
    assert s.one().downloaded_bytes == 10 and s.one().pods == [WEB]
    assert s.one().image_ref == f"{NGINX}:1.27"
    assert s.types().count("pull.started") == 1


def test_kubelets_failure_fails_the_agent_pull_it_describes() -> None:
    corr = FakeCorrelator()
    s = Store(corr)
    s.send("node-a", pull("a1", layers=[layer(0, done=10)]))
    corr.kubelet = [kubelet("k1", "failed", error="context deadline exceeded")]
    s.store.correlation_changed()
    s.tick()
    assert s.ids() == ["a1"]
    assert s.one().phase == "failed" and s.one().error == "context deadline exceeded"
    assert s.one().eta_seconds is None
    s.send("node-a", pull("a1", layers=[layer(0, done=20)]))
    assert s.one().phase == "failed"
    assert s.types().count("pull.failed") == 1


def test_kubelet_does_not_fail_an_image_that_completed() -> None:
    corr = FakeCorrelator()
    s = Store(corr)
    s.send("node-a", pull("a1", layers=[layer(0, done=1000)]))
    corr.kubelet = [kubelet("k1", "failed", error="CreateContainerError")]
    s.store.correlation_changed()
    s.tick()
    assert s.ids() == ["a1"] and s.one().phase == "completed" and s.one().pods == [WEB]


def test_an_earlier_pull_of_the_image_does_not_hide_a_later_failure() -> None:
    corr = FakeCorrelator()
    s = Store(corr)
    s.send("node-a", pull("a1", layers=[layer(0, done=1000)]))
    later = T0 + timedelta(minutes=10)
    corr.kubelet = [kubelet("k2", "failed", started_at=later, completed_at=later, error="nope")]
    s.store.correlation_changed()
    s.tick()
    assert sorted(s.ids()) == ["a1", "k2"]
    assert s.store.get("a1").phase == "completed"  # type: ignore[union-attr]
    assert s.store.get("k2").phase == "failed"  # type: ignore[union-attr]


def test_a_resolving_pull_absorbs_kubelets_row_once_it_is_named() -> None:
    corr = FakeCorrelator(kubelet=[kubelet("k1", "pulling")])
    s = Store(corr)
    s.tick()
    s.send("node-a", resolving("r1", blob=DIGEST))
    assert sorted(s.ids()) == ["k1", "r1"]
    s.send("node-a", pull("a1", layers=[layer(0, done=10)]))
    assert s.ids() == ["r1"]
    assert s.one().pods == [WEB]
    assert s.types("k1") == ["pull.started", "pull.removed"]
    # Later changes to kubelet's pull still reach the pull it joined.
    corr.kubelet = [kubelet("k1", "failed", error="back-off")]
    s.store.correlation_changed()
    s.tick()
    assert s.one().phase == "failed" and s.one().error == "back-off"


def test_an_active_kubelet_row_that_kubelet_forgets_is_removed() -> None:
    corr = FakeCorrelator(kubelet=[kubelet("k1", "pulling")])
    s = Store(corr)
    s.tick()
    corr.kubelet = []
    s.store.correlation_changed()
    s.tick()
    assert s.ids() == []
    assert s.types() == ["pull.started", "pull.removed"]


def test_what_kubernetes_says_is_served_only_when_clients_can_decode_it() -> None:
    """A pod spec's image is not checked by the API server as the wire checks an image
    reference: the collector keeps what passes and leaves out what would break every
    client's list."""
    corr = FakeCorrelator(
        kubelet=[
            kubelet("k1", "pulling", node_name="node-b"),
            kubelet("k2", "pulling", node_name="node-b", image_ref="nginx\x1b[2J:1"),
            kubelet("k3", "failed", node_name="node-c", error="e" * 10_000),
        ],
        pods={("node-a", NGINX): ([WEB], "nginx latest")},
    )
    s = Store(corr)
    s.send("node-a", pull("a1", layers=[layer(0, done=10)]))
    s.tick()
    assert sorted(s.ids()) == ["a1", "k1", "k3"]
    listed = {p.id: p for p in s.store.pulls()}
    assert listed["a1"].pods == [] and listed["a1"].image_ref == f"{NGINX}@{DIGEST}"
    assert len(listed["k3"].error) == 4096
    served = msgspec.json.encode(PullList(pulls=s.store.pulls()))
    assert msgspec.json.decode(served, type=PullList).pulls == s.store.pulls()
