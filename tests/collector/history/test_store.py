"""The back ends themselves, both through one suite: rows, pages, filters, stats, retention,
updates and tags, migrations, and the recorder that feeds them."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pulltrace.collector.history.base import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Cursor,
    HistoryError,
    HistoryQuery,
    SqlHistory,
)
from pulltrace.collector.history.recorder import Recorder, finished_pull
from pulltrace.collector.history.rollup import RELATIVE_ERROR, Roll
from pulltrace.model import DiunNotification, FinishedPull, PodRef, PullEvent, PullStatus

Open = Callable[..., SqlHistory]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def done(
    pull_id: str,
    *,
    at: float = 0.0,
    seconds: float = 10.0,
    node: str = "node-a",
    repo: str = "docker.io/library/nginx",
    tag: str = "1.27",
    phase: str = "completed",
    downloaded: int = 1000,
) -> FinishedPull:
    start = T0 + timedelta(seconds=at)
    return finished_pull(
        PullStatus(
            id=pull_id,
            node_name=node,
            image_ref=f"{repo}:{tag}",
            repository=repo,
            phase=phase,  # type: ignore[arg-type]
            downloaded_bytes=downloaded,
            total_bytes=downloaded,
            started_at=start,
            completed_at=start + timedelta(seconds=seconds),
            error="boom" if phase == "failed" else "",
            pods=[PodRef(namespace="shop", pod_name=f"web-{pull_id}")],
        )
    )


def ids(pulls: list[FinishedPull]) -> list[str]:
    return [p.id for p in pulls]


def test_an_empty_database_is_migrated_to_the_newest_schema(open_history: Open) -> None:
    history = open_history()
    assert history.schema_version() == SCHEMA_VERSION
    assert history.count() == 0 and history.updates() == [] and history.tags() == []
    assert open_history().schema_version() == SCHEMA_VERSION  # opening again changes nothing


def test_a_previous_schema_is_migrated_with_its_rows(open_history: Open) -> None:
    old = open_history(target=SCHEMA_VERSION - 1)
    assert old.schema_version() == SCHEMA_VERSION - 1
    row = done("v1-pull", downloaded=5000)
    # What a collector of the previous version wrote: no peak speed column yet.
    old._db().run(
        "INSERT INTO pulltrace_pulls (id, node, image, repository, phase, finished_at, duration,"
        " downloaded, avg_speed, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [row.id, row.node_name, row.image_ref, row.repository, row.phase,
         (T0 + timedelta(seconds=10)).timestamp(), 10.0, 5000, 500.0,
         '{"id":"v1-pull","nodeName":"node-a","phase":"completed","downloadedBytes":5000}'],
    )  # fmt: skip
    old.close()
    new = open_history()
    assert new.schema_version() == SCHEMA_VERSION
    (migrated,) = new.query(HistoryQuery())[0]
    assert migrated.id == "v1-pull" and migrated.downloaded_bytes == 5000
    assert migrated.peak_bytes_per_sec == 0.0
    (group,) = new.stats("node", None)
    assert group.key == "node-a" and group.count == 1 and group.bytes == 5000
    assert new.create_tag("ml") is not None  # the tables the migration added work


def test_a_newer_schema_is_refused(open_history: Open) -> None:
    history = open_history()
    if history.kind == "sqlite":
        history._db().run(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    else:
        history._db().run("UPDATE pulltrace_schema SET version = ?", [SCHEMA_VERSION + 1])
    history.close()
    with pytest.raises(HistoryError, match="newer than this pulltrace"):
        open_history()


def test_rows_are_upserted_by_id_and_listed_newest_first(open_history: Open) -> None:
    history = open_history()
    history.write([done("a", at=0), done("b", at=5), done("c", at=10)])
    late_pods = done("a", at=0)
    late_pods.pods.append(PodRef(namespace="shop", pod_name="late"))
    history.write([late_pods, late_pods])
    pulls, cursor = history.query(HistoryQuery())
    assert ids(pulls) == ["c", "b", "a"] and cursor is None
    assert [p.pod_name for p in pulls[2].pods] == ["web-a", "late"]
    assert pulls[0].layers == [] and pulls[0].duration_seconds == 10.0
    assert history.count() == 3


def test_pages_cover_everything_once(open_history: Open) -> None:
    history = open_history()
    # Equal finish times too: the id breaks ties, so no row is skipped or repeated.
    history.write([done(f"p{i:03}", at=float(i // 3)) for i in range(50)])
    seen: list[str] = []
    after = None
    while True:
        page, after = history.query(HistoryQuery(limit=7, after=after))
        seen += ids(page)
        if after is None:
            break
        after = Cursor.decode(after.encode())
    assert sorted(seen) == sorted(f"p{i:03}" for i in range(50)) and len(seen) == 50


def test_filters(open_history: Open) -> None:
    history = open_history()
    history.write(
        [
            done("a", at=0, node="gpu-1"),
            done("b", at=100, repo="docker.io/library/redis", phase="failed"),
            done("c", at=200, node="gpu-1", tag="1.28"),
        ]
    )

    def q(**kw: object) -> list[str]:
        return sorted(ids(history.query(HistoryQuery(**kw))[0]))  # type: ignore[arg-type]

    assert q(node="gpu-1") == ["a", "c"]
    assert q(image="redis") == ["b"]
    assert q(image="nginx:1.28") == ["c"]
    assert q(phase="failed") == ["b"]
    start = (T0 + timedelta(seconds=100)).timestamp()
    assert q(since=start) == ["b", "c"]  # finished at 110 and 210
    assert q(until=start + 20) == ["a", "b"]
    assert q(image="%") == [] and q(image="_") == []  # no pattern characters


def test_stats_per_group(open_history: Open) -> None:
    history = open_history()
    durations = [3.0, 1.0, 4.0, 1.5, 9.0, 2.0, 6.0, 5.0, 3.5, 8.0]
    history.write(
        [done(f"n{i}", at=i * 20.0, seconds=s, downloaded=1000) for i, s in enumerate(durations)]
        + [done("r1", repo="docker.io/library/redis", node="node-b", phase="failed")]
    )
    by_image = {g.key: g for g in history.stats("image", None)}
    nginx = by_image["docker.io/library/nginx:1.27"]
    ordered = sorted(durations)
    assert nginx.count == 10 and nginx.failures == 0 and nginx.bytes == 10_000
    close = pytest.approx  # quantiles come from 1 % buckets; counts and maxima are exact
    assert nginx.duration_seconds.p50 == close(ordered[4], rel=RELATIVE_ERROR)
    assert nginx.duration_seconds.p95 == close(ordered[9], rel=RELATIVE_ERROR)
    assert nginx.duration_seconds.max == 9.0
    assert nginx.average_bytes_per_sec.max == 1000.0  # 1000 bytes in one second
    assert next(iter(by_image)) == "docker.io/library/nginx:1.27"  # the largest group first
    redis = by_image["docker.io/library/redis:1.27"]
    assert (redis.count, redis.failures) == (1, 1)
    assert {g.key for g in history.stats("node", None)} == {"node-a", "node-b"}
    assert {g.key for g in history.stats("repository", None)} == {
        "docker.io/library/nginx",
        "docker.io/library/redis",
    }
    recent = history.stats("image", (T0 + timedelta(seconds=100)).timestamp())
    assert {g.key: g.count for g in recent} == {"docker.io/library/nginx:1.27": 5}
    assert history.stats("image", (T0 + timedelta(days=1)).timestamp()) == []


def test_stats_over_days_and_after_pruning(open_history: Open) -> None:
    history = open_history()
    hour = 3600.0
    # Every 6 hours for 3 days; the longest pull is the first one.
    pulls = [done(f"p{i:02}", at=i * 6 * hour, seconds=100.0 if i == 0 else 10.0 + i)
             for i in range(12)]  # fmt: skip
    history.write(pulls)
    history.write(pulls[:3])  # upserts count once

    def nginx(since: float | None) -> tuple[int, float]:
        (group,) = history.stats("image", since)
        return group.count, group.duration_seconds.max

    assert nginx(None) == (12, 100.0)
    finished = [p.completed_at.timestamp() for p in pulls if p.completed_at]
    for i in range(12):  # a window from each pull's end: whole days plus a partial one
        assert nginx(finished[i])[0] == 12 - i
    assert history.prune(finished[1], 1000) == 1  # the longest goes: the maximum follows
    assert nginx(None) == (11, 10.0 + 11)
    assert history.prune(0.0, 3) == 8
    assert nginx(None) == (3, 10.0 + 11)
    assert nginx(finished[10]) == (2, 10.0 + 11)
    assert history.prune(finished[11] + 1, 1000) == 3
    assert history.stats("image", None) == [] and history.stats("node", 0.0) == []


def test_retention_and_size_cap(open_history: Open) -> None:
    history = open_history()
    history.write([done(f"p{i}", at=i * 60.0) for i in range(10)])
    cutoff = (T0 + timedelta(minutes=3)).timestamp()  # p0..p2 finished before it
    assert history.prune(cutoff, 1000) == 3
    assert history.count() == 7
    assert history.prune(cutoff, 4) == 3  # the oldest beyond the cap
    assert ids(history.query(HistoryQuery())[0]) == ["p9", "p8", "p7", "p6"]


def test_recent_is_oldest_first_and_bounded(open_history: Open) -> None:
    history = open_history()
    history.write([done(f"p{i}", at=i * 60.0) for i in range(5)])
    since = (T0 + timedelta(minutes=1)).timestamp()
    assert ids(history.recent(since, 10)) == ["p1", "p2", "p3", "p4"]
    assert ids(history.recent(since, 2)) == ["p3", "p4"]  # the newest, still oldest first


def test_updates_and_tags(open_history: Open) -> None:
    history = open_history()
    nginx = DiunNotification(image="docker.io/library/nginx:1.27", digest="sha256:1", status="new")
    history.upsert_update(nginx, 100.0)
    assert history.acknowledge(nginx.image, True)
    assert history.updates()[0].acknowledged
    history.upsert_update(DiunNotification(image=nginx.image, digest="sha256:2"), 200.0)
    (update,) = history.updates()
    assert not update.acknowledged and update.digest == "sha256:2"  # a repeat re-opens it
    assert update.received_at == datetime.fromtimestamp(200.0, UTC)
    assert not history.acknowledge("docker.io/library/redis:7", True)

    prod = history.create_tag("production")
    assert prod is not None and history.create_tag("production") is None
    assert history.set_tag(nginx.image, prod.id) == "ok"
    assert history.updates()[0].tag == prod
    assert history.set_tag(nginx.image, prod.id + 100) == "no-tag"
    assert history.set_tag("docker.io/library/redis:7", prod.id) == "no-image"
    assert history.delete_tag(prod.id) and not history.delete_tag(prod.id)
    assert history.updates()[0].tag is None and history.tags() == []
    history.upsert_update(nginx, 300.0)
    assert history.create_tag("production") is not None  # the name is free again


def event(kind: str, status: PullStatus) -> PullEvent:
    return PullEvent(timestamp=T0, type=kind, node_name=status.node_name, pull=status)  # type: ignore[arg-type]


def test_the_recorder_batches_finished_pulls_and_keeps_the_peak(open_history: Open) -> None:
    history = open_history()
    recorder = Recorder(history, retention=86400 * 365 * 5, max_rows=100, flush_interval=0.05)
    pulling = PullStatus(id="x", node_name="node-a", phase="pulling", started_at=T0)
    recorder.on_event(event("pull.started", pulling))
    for speed in (100.0, 900.0, 300.0):
        moving = PullStatus(
            id="x", node_name="node-a", phase="pulling", bytes_per_sec=speed, started_at=T0
        )
        recorder.on_event(event("pull.progress", moving))
    finished = PullStatus(
        id="x",
        node_name="node-a",
        phase="completed",
        downloaded_bytes=2000,
        started_at=T0,
        completed_at=T0 + timedelta(seconds=10),
    )
    recorder.on_event(event("pull.completed", finished))
    recorder.on_event(event("pull.removed", finished))
    recorder.start()
    recorder.close()  # writes what is queued first
    (row,) = open_history().query(HistoryQuery())[0]
    assert row.peak_bytes_per_sec == 900.0 and row.average_bytes_per_sec == 200.0
    assert recorder.written == 1


def test_finished_pull_without_times_has_no_duration() -> None:
    row = finished_pull(PullStatus(id="x", node_name="n", phase="failed", downloaded_bytes=5))
    assert (row.duration_seconds, row.average_bytes_per_sec) == (0.0, 0.0)


@given(st.text(max_size=600))
def test_hostile_continue_tokens_are_refused_cleanly(token: str) -> None:
    try:
        cursor = Cursor.decode(token)
    except ValueError:
        return
    assert math.isfinite(cursor.finished_at) and len(cursor.id) <= 256


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@given(st.lists(st.floats(min_value=0, max_value=1e9), min_size=1, max_size=200))
def test_rollup_quantiles_are_within_the_stated_error(values: list[float]) -> None:
    roll = Roll()
    for v in values:
        roll.add(False, 0, v, v)
    group = roll.group("k")
    for q, got in ((0.5, group.duration_seconds.p50), (0.95, group.duration_seconds.p95)):
        exact = nearest_rank(values, q)
        assert got == pytest.approx(exact, rel=RELATIVE_ERROR * 1.0001, abs=1e-9)
    assert group.duration_seconds.max == max(values)


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=50), st.data())
def test_taking_away_what_was_added_leaves_the_rest(
    values: list[float], data: st.DataObject
) -> None:
    keep = data.draw(st.integers(min_value=0, max_value=len(values)))
    whole, kept, gone = Roll(), Roll(), Roll()
    for i, v in enumerate(values):
        whole.add(v > 5, 1, v, v)
        (kept if i < keep else gone).add(v > 5, 1, v, v)
    whole.merge(gone, -1)
    assert (whole.count, whole.failures, whole.bytes) == (kept.count, kept.failures, kept.bytes)
    assert whole.durations == kept.durations and whole.speeds == kept.speeds


def test_every_migration_is_a_list_of_statements() -> None:
    assert len(MIGRATIONS) == SCHEMA_VERSION and all(MIGRATIONS)


class Refusing:
    """The real back end behind a database that refuses the first writes (PostgreSQL
    restarting): the recorder keeps the rows and writes them once it answers again."""

    def __init__(self, history: SqlHistory, refusals: int) -> None:
        self.history = history
        self.refusals = refusals
        self.kind = history.kind

    def write(self, pulls: list[FinishedPull]) -> None:
        if self.refusals:
            self.refusals -= 1
            raise HistoryError("the database is restarting")
        self.history.write(pulls)

    def prune(self, before: float, max_rows: int) -> int:
        return self.history.prune(before, max_rows)

    def close(self) -> None:
        self.history.close()


def test_rows_wait_while_the_database_refuses_writes(open_history: Open) -> None:
    backend = Refusing(open_history(), refusals=2)
    recorder = Recorder(backend, retention=1e9, max_rows=100, flush_interval=0.01)  # type: ignore[arg-type]
    for i in range(3):
        status = done(f"p{i}")
        recorder.on_event(event("pull.completed", status))
    recorder.flush()
    recorder.flush()
    assert recorder.written == 0 and backend.refusals == 0
    recorder.flush()
    assert recorder.written == 3
    assert ids(open_history().query(HistoryQuery())[0]) == ["p2", "p1", "p0"]
