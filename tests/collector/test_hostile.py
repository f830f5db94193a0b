"""Hostile reports against the real ASGI app: every bad value is a 400 (or a 429 when the store
is full) that names the field and changes nothing; no input is ever a 5xx; and whatever the
collector accepted, it serves in a shape its own clients can decode."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pulltrace.collector.app import create_app
from pulltrace.collector.broker import Broker
from pulltrace.collector.config import CollectorConfig
from pulltrace.model import (
    INT64_MAX,
    LAYERS_MAX,
    NodeList,
    PullEvent,
    PullList,
    PullStatus,
    encode,
)
from pulltrace.pullstore import PullStore
from tests.collector.conftest import (
    Clock,
    FakeCorrelator,
    body,
    layer,
    pull,
    replace_struct,
    report,
)

REPORT = "/api/v1/report"


@dataclass
class App:
    """The collector's app in process, with its store, and every event the store emitted."""

    store: PullStore
    http: httpx.AsyncClient
    clock: Clock
    events: list[PullEvent] = field(default_factory=list)

    def state(self) -> tuple[bytes, bytes, int]:
        """What a 4xx must leave alone: the pulls, the nodes, and the events sent."""
        pulls = encode(PullList(pulls=self.store.pulls()))
        nodes = encode(NodeList(nodes=self.store.nodes()))
        return pulls, nodes, len(self.events)

    async def post(self, content: bytes) -> httpx.Response:
        return await self.http.post(REPORT, content=content)


def make_app(
    config: CollectorConfig | None = None, correlator: FakeCorrelator | None = None
) -> App:
    config = config or CollectorConfig()
    clock = Clock()
    store = PullStore(
        config.history_ttl,
        correlator,
        clock=clock,
        stale_check_interval=0.0,
        max_pulls=config.max_pulls,
        max_nodes=config.max_nodes,
    )
    broker = Broker(store.snapshot, nodes=store.nodes)
    limiter_time = itertools.count(step=10.0)  # the rate limit never gets in the way
    asgi = create_app(
        config, store, broker, correlator, limiter_clock=lambda: float(next(limiter_time))
    )
    transport = httpx.ASGITransport(app=asgi)
    app = App(store, httpx.AsyncClient(transport=transport, base_url="http://collector"), clock)
    store.add_listener(app.events.append)
    return app


@pytest.fixture
async def app() -> AsyncIterator[App]:
    made = make_app()
    async with made.http:
        yield made


def assert_error(reply: httpx.Response, status: int, *words: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    message = reply.json()["error"]
    for word in words:
        assert word in message, message


def check_served(app: App) -> None:
    """What the collector holds passes its own schema, so every client can decode it, and
    keeps the invariants a view relies on."""
    for status in app.store.pulls():
        again = msgspec.json.decode(encode(status), type=PullStatus)
        assert again == status
        assert 0 <= status.percent <= 100
        assert status.downloaded_bytes >= 0 and status.cached_bytes >= 0
        assert math.isfinite(status.bytes_per_sec) and status.bytes_per_sec >= 0
        assert status.eta_seconds is None or math.isfinite(status.eta_seconds)
        for x in status.layers:
            assert 0 <= x.percent <= 100 and math.isfinite(x.bytes_per_sec)
    msgspec.json.decode(encode(NodeList(nodes=app.store.nodes())), type=NodeList)


def deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def raw_report(**fields: bytes) -> bytes:
    """A report with its fields given as raw JSON, to say what the encoder never would."""
    base = {"nodeName": b'"node-a"', "timestamp": b'"2026-01-01T12:00:00Z"', **fields}
    return b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in base.items()) + b"}"


def raw_pull(**fields: bytes) -> bytes:
    base = {"id": b'"p1"', "nodeName": b'"node-a"', **fields}
    return b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in base.items()) + b"}"


def raw_layer(**fields: bytes) -> bytes:
    base = {"digest": b'"sha256:' + b"a" * 64 + b'"', **fields}
    return b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in base.items()) + b"}"


HOSTILE = [
    (raw_report(pulls=b"[%s]" % raw_pull(totalBytes=str(10**400).encode())), "totalBytes"),
    (raw_report(pulls=b"[%s]" % raw_pull(downloadedBytes=str(2**64).encode())), "downloaded"),
    (raw_report(pulls=b"[%s]" % raw_pull(cachedBytes=str(INT64_MAX + 1).encode())), "cached"),
    (raw_report(pulls=b"[%s]" % raw_pull(totalBytes=b"1e308")), "totalBytes"),
    (raw_report(pulls=b"[%s]" % raw_pull(bytesPerSec=b"1e308")), "bytesPerSec"),
    (raw_report(pulls=b"[%s]" % raw_pull(etaSeconds=b"1e300")), "etaSeconds"),
    (raw_report(pulls=b"[%s]" % raw_pull(totalBytes=b"-1")), "totalBytes"),
    (raw_report(intervalSeconds=b"1e308"), "intervalSeconds"),
    (raw_report(intervalSeconds=b"0.001"), "intervalSeconds"),
    (raw_report(pulls=b"[%s]" % raw_pull(id=b'"a/b"')), "$.pulls[0].id"),
    (raw_report(pulls=b"[%s]" % raw_pull(id=b'".."')), "$.pulls[0].id"),
    (raw_report(pulls=b"[%s]" % raw_pull(id=b'"' + b"x" * 129 + b'"')), "$.pulls[0].id"),
    (raw_report(pulls=b"[%s]" % raw_pull(imageRef=b'"nginx\\u001b[2J"')), "imageRef"),
    (raw_report(pulls=b"[%s]" % raw_pull(imageRef=b'"' + b"a" * 4097 + b'"')), "imageRef"),
    (raw_report(pulls=b"[%s]" % raw_pull(manifestDigest=b'"sha256:\\u0007"')), "manifest"),
    (raw_report(pulls=b"[%s]" % raw_pull(error=b'"' + b"e" * 4097 + b'"')), "error"),
    (raw_report(nodeName=b'"node\\rname"'), "nodeName"),
    (raw_report(nodeName=b'"' + b"n" * 254 + b'"'), "nodeName"),
    (raw_report(timestamp=b'"2026-01-01T12:00:00"'), "timestamp"),
    (raw_report(agentVersion=b'"' + b"v" * 257 + b'"'), "agentVersion"),
    (raw_report(pulls=b"[%s]" % raw_pull(startedAt=b'"2026-01-01T12:00:00"')), "startedAt"),
    (
        raw_report(pulls=b"[%s]" % b",".join([raw_pull(id=b'"p%d"' % i) for i in range(1001)])),
        "pulls",
    ),
    (
        raw_report(pulls=b"[%s]" % raw_pull(layers=b"[%s]" % raw_layer(digest=b'"sha256:a b"'))),
        "digest",
    ),
    (
        raw_report(
            pulls=b"[%s]"
            % raw_pull(
                layers=b"[%s]"
                % raw_layer(totalBytes=b"10", downloadedBytes=b"11", totalKnown=b"true")
            )
        ),
        "$.pulls[0].layers[0].downloadedBytes",
    ),
    (
        raw_report(
            pulls=b"[%s]"
            % raw_pull(totalBytes=b"10", downloadedBytes=b"6", cachedBytes=b"5", totalKnown=b"true")
        ),
        "$.pulls[0].downloadedBytes",
    ),
    (
        raw_report(pulls=b"[%s]" % raw_pull(layers=b"[%s,%s]" % (raw_layer(), raw_layer()))),
        "appears twice",
    ),
    (raw_report(extra=deep(1000)), "nested too deeply"),
    (raw_report(pulls=deep(1000)), ""),
    (raw_report(pulls=b"[%s]" % raw_pull(layers=deep(1000))), ""),
]


@pytest.mark.parametrize(
    ("content", "named"),
    HOSTILE,
    ids=[f"{i}-{named or 'nesting'}" for i, (_, named) in enumerate(HOSTILE)],
)
async def test_hostile_values_are_400_naming_the_field_and_change_nothing(
    app: App, content: bytes, named: str
) -> None:
    assert (await app.post(body("node-a", [pull("a1")]))).status_code == 204
    before = app.state()
    assert_error(await app.post(content), 400, named)
    assert app.state() == before
    assert (await app.post(body("node-a", [pull("a1", layers=[layer(0, done=500)])]))).is_success
    check_served(app)


async def test_a_pull_of_more_layers_than_any_image_has_is_400(app: App) -> None:
    layers = [layer(i, done=10) for i in range(LAYERS_MAX + 1000)]
    assert_error(await app.post(body("node-a", [pull("big", layers=layers)])), 400, "layers")
    assert app.state() == (encode(PullList(pulls=[])), encode(NodeList(nodes=[])), 0)


async def test_a_thousand_layer_pull_costs_events_in_proportion_to_the_report(app: App) -> None:
    """Each layer's event carries the pull without its layers: the bytes of all the events of
    a thousand started layers are a small multiple of the report."""
    layers = [layer(i, done=10, pull="big") for i in range(LAYERS_MAX)]
    content = body("node-a", [pull("big", layers=layers)])
    assert (await app.post(content)).status_code == 204
    kinds = [e.type for e in app.events]
    assert kinds.count("layer.started") == LAYERS_MAX
    sent = sum(len(encode(e)) for e in app.events)
    # Each layer event is about a kilobyte: the pull's own fields, the layer and the envelope.
    # With the whole pull in each, as before, it was some 250 MB, a thousand times the report.
    assert sent < 8 * len(content), (sent, len(content))


async def test_the_store_stays_usable_after_the_10_400_report(app: App) -> None:
    """What issue 11 found: the huge count was a 500 that left the pull stored, and every later
    report of the node a 500 too."""
    huge = raw_report(pulls=b"[%s]" % raw_pull(totalBytes=str(10**400).encode()))
    assert_error(await app.post(huge), 400, "totalBytes")
    assert app.store.pulls() == []
    reply = await app.post(body("node-a", [pull("p1", layers=[layer(0, done=10)])]))
    assert reply.status_code == 204
    assert [p.id for p in app.store.pulls()] == ["p1"]


async def test_an_id_the_api_can_serve_is_served(app: App) -> None:
    assert (await app.post(body("node-a", [pull("sha256:abc-1.2_x")]))).status_code == 204
    reply = await app.http.get("/api/v1/pulls/sha256:abc-1.2_x")
    assert reply.status_code == 200 and reply.json()["id"] == "sha256:abc-1.2_x"


# -- all or nothing ---------------------------------------------------------------------------


class Exploding(FakeCorrelator):
    """Fails the match of one repository: a fault in the middle of a merge, after the store
    has already created the pull and its node."""

    def match(self, node: str, repository: str, manifest_digest: str) -> Any:
        if repository.endswith("/boom"):
            raise RuntimeError("correlator fault")
        return super().match(node, repository, manifest_digest)


async def test_a_merge_that_fails_halfway_is_rolled_back_and_tells_nobody() -> None:
    app = make_app(correlator=Exploding(synced=True))
    async with app.http:
        first = [pull("a1", layers=[layer(0, done=10)])]
        assert (await app.post(body("node-a", first))).status_code == 204
        before = app.state()
        moved = pull("a1", layers=[layer(0, done=900)])
        bad = pull("b1", repo="docker.io/library/boom", digest="sha256:" + "b" * 64)
        with pytest.raises(RuntimeError):
            app.store.apply_report(report("node-a", [moved, bad], at=1))
        assert app.state() == before
        with pytest.raises(RuntimeError):
            app.store.apply_report(report("node-new", [replace_struct(bad, node_name="node-new")]))
        assert app.state() == before
        assert (await app.post(body("node-a", [moved], at=2))).status_code == 204
        assert app.store.pulls()[0].downloaded_bytes == 900
        check_served(app)


# -- caps ------------------------------------------------------------------------------------


async def test_over_the_pull_cap_the_oldest_finished_pull_goes_first() -> None:
    app = make_app(CollectorConfig(max_pulls=3))
    async with app.http:
        for n in range(3):  # three pulls that finish one after the other
            app.clock.advance(1)
            finished = pull(f"done{n}", node=f"node-{n}", layers=[layer(0, done=1000)])
            assert (await app.post(body(f"node-{n}", [finished], at=n))).status_code == 204
        app.clock.advance(1)
        fresh = pull("new", node="node-x", layers=[layer(0, done=10)])
        assert (await app.post(body("node-x", [fresh], at=10))).status_code == 204
        assert sorted(p.id for p in app.store.pulls()) == ["done1", "done2", "new"]
        removed = [e.pull.id for e in app.events if e.type == "pull.removed"]
        assert removed == ["done0"]


async def test_over_the_pull_cap_with_every_pull_in_flight_a_new_one_is_429() -> None:
    app = make_app(CollectorConfig(max_pulls=2))
    async with app.http:
        for n in range(2):
            active = pull(f"a{n}", node=f"node-{n}", layers=[layer(0, done=10)])
            assert (await app.post(body(f"node-{n}", [active]))).status_code == 204
        before = app.state()
        refused = await app.post(body("node-x", [pull("x", node="node-x")]))
        assert_error(refused, 429, "maximum of 2 pulls")
        assert refused.headers["retry-after"]
        assert app.state() == before
        # The nodes already held carry on.
        moved = pull("a0", node="node-0", layers=[layer(0, done=500)])
        assert (await app.post(body("node-0", [moved], at=1))).status_code == 204


async def test_over_the_node_cap_the_node_silent_longest_goes_with_its_pulls() -> None:
    app = make_app(CollectorConfig(max_nodes=2))
    async with app.http:
        for n in range(2):
            app.clock.advance(1)
            active = pull(f"a{n}", node=f"node-{n}", layers=[layer(0, done=10)])
            assert (await app.post(body(f"node-{n}", [active]))).status_code == 204
        assert_error(await app.post(body("node-x", [])), 429, "maximum of 2 nodes")
        app.clock.advance(10)  # both silent for ten intervals: stale
        app.store.tick()
        assert (await app.post(body("node-x", []))).status_code == 204
        assert [n.node_name for n in app.store.nodes()] == ["node-1", "node-x"]
        assert [p.id for p in app.store.pulls()] == ["a1"]


# -- pages -----------------------------------------------------------------------------------


async def test_pages_of_the_pull_list_cover_every_pull_once_in_order(app: App) -> None:
    for n in range(25):
        app.clock.advance(1)
        one = pull(f"p{n:02d}", node=f"node-{n}", layers=[layer(0, done=10)])
        assert (await app.post(body(f"node-{n}", [one], at=n))).status_code == 204
    everything = (await app.http.get("/api/v1/pulls")).json()
    assert "continue" not in everything and len(everything["pulls"]) == 25
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        params = {"limit": "10", **({"continue": token} if token else {})}
        page = (await app.http.get("/api/v1/pulls", params=params)).json()
        seen += [p["id"] for p in page["pulls"]]
        pages += 1
        token = page.get("continue", "")
        if not token:
            break
    assert pages == 3
    assert seen == [p["id"] for p in everything["pulls"]]
    filtered = (await app.http.get("/api/v1/pulls", params={"limit": 1, "node": "node-3"})).json()
    assert [p["id"] for p in filtered["pulls"]] == ["p03"] and "continue" not in filtered


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"limit": "0"}, ["limit"]),
        ({"limit": "-1"}, ["limit"]),
        ({"limit": "5001"}, ["limit"]),
        ({"limit": "1e3"}, ["limit"]),
        ({"continue": "not-a-token"}, ["invalid continue token"]),
        ({"continue": "W1tdXQ"}, ["invalid continue token"]),
        ({"continue": "\u00e9\u00e9"}, ["invalid continue token"]),
    ],
)
async def test_bad_paging_parameters_are_400(
    app: App, params: dict[str, str], words: list[str]
) -> None:
    assert (await app.post(body("node-a", [pull("a1")]))).status_code == 204
    assert_error(await app.http.get("/api/v1/pulls", params=params), 400, *words)


# -- properties ------------------------------------------------------------------------------

NODES = st.sampled_from(["node-a", "node-b", "n.example.com"])
IDS = st.sampled_from(["p1", "p2", "p3"])


@st.composite
def layers(draw: st.DrawFn, pull_id: str) -> list[Any]:
    n = draw(st.integers(0, 4))
    out = []
    for i in range(n):
        total = draw(st.integers(1, 10**9))
        done = draw(st.integers(0, total))
        out.append(layer(i, total=total, done=done, cached=draw(st.booleans()), pull=pull_id))
    return out


@st.composite
def reports(draw: st.DrawFn) -> dict[str, Any]:
    node = draw(NODES)
    ids = draw(st.lists(IDS, unique=True, max_size=3))
    pulls = []
    for pull_id in ids:
        status = pull(
            pull_id,
            node=node,
            layers=draw(layers(pull_id)),
            phase=draw(st.sampled_from([None, "failed", "resolving"])),
        )
        pulls.append(status)
    doc: dict[str, Any] = msgspec.to_builtins(report(node, pulls, at=draw(st.floats(0, 100))))
    return doc


DEEP = "deep-nesting-goes-here"
"""Replaced by arrays nested 100 000 deep once encoded (the encoder would refuse them): not a
thousand, since hypothesis raises the recursion limit by some thousands while it runs."""
HOSTILE_LEAVES = st.one_of(
    st.sampled_from(
        [10**400, 2**64, INT64_MAX, -1, 1e308, -0.0, "", "a/b", "\x1b[2J", "x" * 5000, None, [], {}]
    ),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.booleans(),
)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += paths(value, (*prefix, i))
    return found


def lookup(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def mutate(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: mutate(doc[head], rest, value)}
    copy = list(doc)
    copy[head] = mutate(doc[head], rest, value)
    return copy


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid report, one with hostile values in place of some of its own, one with a field
    no schema knows (which msgspec parses to skip it), or one cut short, each as likely."""
    doc = draw(reports())
    mode = draw(st.sampled_from(["valid", "values", "unknown", "cut"]))
    if mode == "values":
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(paths(doc)))
            doc = mutate(doc, path, draw(HOSTILE_LEAVES))
    elif mode == "unknown":
        objects = [p for p in paths(doc) if isinstance(lookup(doc, p), dict)]
        path = draw(st.sampled_from(objects))
        value = draw(st.one_of(st.just(DEEP), HOSTILE_LEAVES))
        doc = mutate(doc, path, {**lookup(doc, path), "unknownField": value})
    text = json.dumps(doc, allow_nan=False).replace(f'"{DEEP}"', deep(100_000).decode())
    if mode != "cut":
        return text.encode()
    cut = draw(st.integers(0, len(text)))
    return text[:cut].encode() + draw(st.sampled_from([b"", deep(1000), b"]}", b"\x00"]))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(mutated(), min_size=1, max_size=6))
async def test_no_report_is_a_5xx_and_a_refused_one_changes_nothing(contents: list[bytes]) -> None:
    app = make_app(CollectorConfig(max_pulls=5, max_nodes=2))
    async with app.http:
        for content in contents:
            app.clock.advance(1)
            before = app.state()
            reply = await app.post(content)
            assert reply.status_code < 500, reply.text
            if reply.status_code >= 400:
                assert reply.headers["content-type"] == "application/json"
                assert app.state() == before
            check_served(app)
            app.store.tick()
            check_served(app)


def exact_client(app: App) -> Callable[[], list[PullStatus]]:
    """A client applying the store's events as ``pulltrace watch`` does."""
    from pulltrace.client.source import Event
    from pulltrace.client.store import ClientStore

    client = ClientStore()
    client.apply_snapshot(app.store.pulls())
    app.store.add_listener(lambda event: client.apply(Event(event)))
    return lambda: sorted(client.pulls(), key=lambda p: p.id)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(reports(), min_size=1, max_size=8))
async def test_a_client_rebuilds_every_pull_exactly_from_the_events(
    docs: list[dict[str, Any]],
) -> None:
    app = make_app()
    held = exact_client(app)
    async with app.http:
        for doc in docs:
            app.clock.advance(1)
            await app.post(json.dumps(doc).encode())
            app.clock.advance(app.store.progress_interval)
            app.store.tick()  # the coalesced progress goes out
            assert held() == sorted(app.store.pulls(), key=lambda p: p.id)


async def test_a_client_rebuilds_a_pull_whose_layers_move_one_at_a_time(app: App) -> None:
    held = exact_client(app)
    steps = [[0, 0, 0], [10, 0, 0], [1000, 5, 0], [1000, 1000, 0], [1000, 1000, 1000]]
    for at, done in enumerate(steps):
        status = pull("p1", layers=[layer(i, done=d) for i, d in enumerate(done)])
        app.clock.advance(1)
        assert (await app.post(body("node-a", [status], at=at))).status_code == 204
        app.clock.advance(app.store.progress_interval)
        app.store.tick()
        assert held() == app.store.pulls()
    layer_events = [e for e in app.events if e.type.startswith("layer.")]
    assert layer_events and all(e.pull.layers == [] for e in layer_events)
