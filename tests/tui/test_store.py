from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pulltrace.client.store import ClientStore, Query, matches, order
from pulltrace.model import EventType, LayerStatus, PodRef, PullEvent, PullStatus

T0 = datetime(2026, 1, 15, 9, 40, tzinfo=UTC)


def pull(pull_id: str, **kw: object) -> PullStatus:
    base: dict[str, object] = {
        "id": pull_id,
        "node_name": "worker-01",
        "image_ref": "docker.io/library/nginx:1.27",
        "repository": "docker.io/library/nginx",
        "started_at": T0,
    }
    base.update(kw)
    return PullStatus(**base)  # type: ignore[arg-type]


def event(kind: EventType, p: PullStatus, at: float, layer: LayerStatus | None = None) -> PullEvent:
    return PullEvent(
        timestamp=T0 + timedelta(seconds=at), type=kind, node_name=p.node_name, pull=p, layer=layer
    )


def test_events_create_update_and_remove_pulls_and_mark_them_dirty() -> None:
    store = ClientStore()
    store.apply_event(event("pull.started", pull("a"), 0))
    assert store.drain() == ({"a"}, True)
    store.apply_event(event("pull.progress", pull("a", percent=10.0), 1))
    assert store.drain() == ({"a"}, False)
    assert store.drain() == (set(), False)
    store.apply_event(event("pull.completed", pull("a", phase="completed"), 2))
    assert store.drain() == ({"a"}, True)
    store.apply_event(event("pull.removed", pull("a", phase="completed"), 3))
    assert store.drain() == ({"a"}, True)
    assert store.get("a") is None


def test_snapshot_replaces_pulls_but_keeps_surviving_history() -> None:
    store = ClientStore()
    for t in range(3):
        store.apply_event(event("pull.progress", pull("a", bytes_per_sec=100.0 * t), t))
    store.apply_event(event("pull.started", pull("b"), 3))
    store.drain()
    store.apply_snapshot([pull("a", bytes_per_sec=5.0), pull("c")])
    dirty, structural = store.drain()
    assert dirty == {"a", "b", "c"} and structural
    view = store.get("a")
    assert view is not None and list(view.speeds) == [0.0, 100.0, 200.0]
    assert store.get("b") is None


def test_unchanged_snapshot_pull_is_not_dirty() -> None:
    store = ClientStore()
    store.apply_snapshot([pull("a")])
    store.drain()
    store.apply_snapshot([pull("a")])
    assert store.drain() == (set(), False)


def test_a_snapshot_without_a_finished_pulls_layers_keeps_those_already_held() -> None:
    store = ClientStore()
    layers = [LayerStatus(digest="sha256:abc", downloaded_bytes=10)]
    store.apply_event(event("pull.started", pull("a", layers=layers), 0))
    store.apply_event(event("pull.completed", pull("a", phase="completed", layers=layers), 1))
    store.apply_event(event("pull.started", pull("b", layers=layers), 0))
    store.drain()
    # A reconnect: "b" finished meanwhile; neither arrives with its layers.
    store.apply_snapshot([pull("a", phase="completed"), pull("b", phase="completed")])
    assert store.drain() == ({"b"}, False)
    held_a, held_b = store.get("a"), store.get("b")
    assert held_a is not None and held_a.pull.layers == layers
    assert held_b is not None and held_b.pull.layers == []


def test_speed_history_keeps_one_point_per_second() -> None:
    store = ClientStore()
    store.apply_event(event("pull.progress", pull("a", bytes_per_sec=1.0), 0.0))
    store.apply_event(event("pull.progress", pull("a", bytes_per_sec=2.0), 0.5))
    store.apply_event(event("pull.progress", pull("a", bytes_per_sec=3.0), 1.0))
    view = store.get("a")
    assert view is not None and list(view.speeds) == [2.0, 3.0]


def test_lifecycle_log_skips_progress_and_names_layers_and_errors() -> None:
    store = ClientStore()
    layer = LayerStatus(digest="sha256:abc")
    store.apply_event(event("pull.started", pull("a"), 0))
    store.apply_event(event("layer.started", pull("a"), 1, layer))
    store.apply_event(event("pull.progress", pull("a"), 2))
    store.apply_event(event("pull.failed", pull("a", phase="failed", error="boom"), 3))
    view = store.get("a")
    assert view is not None
    assert [(e.type, e.detail) for e in view.log] == [
        ("pull.started", ""),
        ("layer.started", "sha256:abc"),
        ("pull.failed", "boom"),
    ]
    assert view.log[-1].timestamp == T0 + timedelta(seconds=3)


def test_throughput_is_sampled_per_second_of_event_time_and_counts_active_pulls_only() -> None:
    store = ClientStore()
    store.apply_event(event("pull.progress", pull("a", bytes_per_sec=10.0), 0))
    store.apply_event(event("pull.progress", pull("b", bytes_per_sec=5.0), 0.2))
    store.apply_event(event("pull.progress", pull("a", bytes_per_sec=20.0), 3.1))
    store.apply_event(
        event("pull.completed", pull("b", phase="completed", bytes_per_sec=99.0), 3.2)
    )
    store.sample((T0 + timedelta(seconds=4)).timestamp())
    # second 0: nothing yet; seconds 1-3: a 10 + b 5 until the event at 3.1; 4: only a
    assert list(store.throughput) == [0.0, 15.0, 15.0, 15.0, 20.0]
    assert store.total_speed() == 20.0
    assert store.counts() == {"active": 1, "completed": 1, "failed": 0}


def test_throughput_history_is_capped() -> None:
    store = ClientStore()
    store.sample(0.0)
    store.sample(10_000.0)
    assert len(store.throughput) == 300


NGINX = pull("n", node_name="worker-01", pods=[PodRef(namespace="shop", pod_name="edge-1")])
PG = pull(
    "p",
    node_name="worker-02",
    image_ref="docker.io/library/postgres:16",
    repository="docker.io/library/postgres",
    phase="failed",
    pods=[PodRef(namespace="data", pod_name="pg-0")],
)


def test_filter_text_searches_image_node_namespace_and_pod() -> None:
    for text in ("NGINX", "worker-01", "shop", "edge-1", "shop/edge"):
        assert matches(NGINX, Query(text=text))
        assert not matches(PG, Query(text=text))


def test_filter_scopes() -> None:
    assert matches(NGINX, Query(node="worker-01")) and not matches(PG, Query(node="worker-01"))
    assert matches(PG, Query(namespace="data")) and not matches(NGINX, Query(namespace="data"))
    assert matches(PG, Query(phases=frozenset({"failed"})))
    assert not matches(NGINX, Query(phases=frozenset({"failed"})))


def test_order_puts_active_first_and_each_key_has_a_natural_direction() -> None:
    now = T0 + timedelta(seconds=100)
    pulls = [
        pull("old", started_at=T0, bytes_per_sec=1.0, percent=90.0, eta_seconds=5.0),
        pull(
            "new",
            started_at=T0 + timedelta(seconds=50),
            bytes_per_sec=9.0,
            percent=10.0,
            eta_seconds=None,
            node_name="worker-00",
        ),
        pull("done", phase="completed", started_at=T0, bytes_per_sec=50.0),
    ]

    def ids(**kw: object) -> list[str]:
        return [p.id for p in order(pulls, Query(**kw), now)]  # type: ignore[arg-type]

    assert ids() == ["old", "new", "done"]
    assert ids(reverse=True) == ["new", "old", "done"]
    assert ids(sort="speed") == ["new", "old", "done"]
    assert ids(sort="speed", reverse=True) == ["old", "new", "done"]
    assert ids(sort="progress") == ["old", "new", "done"]
    assert ids(sort="eta") == ["old", "new", "done"]
    assert ids(sort="age") == ["new", "old", "done"]
    assert ids(sort="node") == ["new", "old", "done"]
    assert ids(sort="image", text="worker-01") == ["old", "done"]
