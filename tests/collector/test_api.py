"""Every endpoint and every error path, over real sockets: uvicorn on loopback, httpx clients."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import httpx
import pytest

from pulltrace.model import PodRef
from tests.collector.conftest import (
    T0,
    Clock,
    FakeCorrelator,
    Running,
    body,
    layer,
    pull,
)

REDIS = "docker.io/library/redis"
WEB = PodRef(namespace="shop", pod_name="web-0", container="nginx")


def assert_error(reply: httpx.Response, status: int, *words: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    doc = reply.json()
    assert list(doc) == ["error"] and isinstance(doc["error"], str) and doc["error"]
    assert "Traceback" not in doc["error"] and "\n" not in doc["error"]
    for word in words:
        assert word in doc["error"], doc["error"]


@pytest.fixture
async def http(collector: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=collector.url, timeout=10) as client:
        yield client


async def post(client: httpx.AsyncClient, content: bytes, **headers: str) -> httpx.Response:
    return await client.post("/api/v1/report", content=content, headers=headers)


# -- reports ---------------------------------------------------------------------------------


async def test_a_report_is_accepted_and_listed(http: httpx.AsyncClient) -> None:
    status = pull("a1", layers=[layer(0, done=100), layer(1, done=1000)])
    reply = await post(http, body("node-a", [status]))
    assert reply.status_code == 204 and reply.content == b""
    listed = (await http.get("/api/v1/pulls")).json()
    assert listed["schemaVersion"] == "v1"
    (only,) = listed["pulls"]
    assert only["id"] == "a1" and only["nodeName"] == "node-a" and only["phase"] == "pulling"
    assert only["layers"] == [] and only["layerCount"] == 2  # the list leaves layers out
    one = (await http.get("/api/v1/pulls/a1")).json()
    assert [x["digest"] for x in one["layers"]] == [x.digest for x in status.layers]
    assert one["downloadedBytes"] == 1100


async def test_list_filters(http: httpx.AsyncClient, collector: Running) -> None:
    corr_pods = pull("a1", layers=[layer(0, done=10)], pods=[WEB])
    done = pull("a2", repo=REDIS, digest="sha256:" + "2" * 64, layers=[layer(0, done=1000)])
    other = pull("b1", node="node-b", layers=[layer(0, done=10)])
    assert (await post(http, body("node-a", [corr_pods, done]))).status_code == 204
    assert (await post(http, body("node-b", [other]))).status_code == 204

    async def ids(query: str) -> list[str]:
        reply = await http.get(f"/api/v1/pulls?{query}")
        assert reply.status_code == 200, reply.text
        return sorted(p["id"] for p in reply.json()["pulls"])

    assert await ids("") == ["a1", "a2", "b1"]
    assert await ids("node=node-b") == ["b1"]
    assert await ids("namespace=shop") == ["a1"]
    assert await ids("image=redis") == ["a2"]
    assert await ids("image=library/nginx") == ["a1", "b1"]
    assert await ids("phase=completed") == ["a2"]
    assert await ids("phase=pulling&node=node-a") == ["a1"]
    assert await ids("namespace=nowhere") == []
    assert await ids("node=&phase=") == ["a1", "a2", "b1"]


async def test_list_is_active_first_then_newest(http: httpx.AsyncClient) -> None:
    finished = pull("old", layers=[layer(0, done=1000)])
    active = pull("act", repo=REDIS, digest="sha256:" + "2" * 64, layers=[layer(0, 1000, 5)])
    await post(http, body("node-a", [finished, active]))
    assert [p["id"] for p in (await http.get("/api/v1/pulls")).json()["pulls"]] == ["act", "old"]


async def test_bad_filters_are_400(http: httpx.AsyncClient) -> None:
    assert_error(await http.get("/api/v1/pulls?phase=downloading"), 400, "phase must be one of")
    assert_error(await http.get("/api/v1/pulls?nod=x"), 400, "unknown query parameter 'nod'")


async def test_unknown_pull_is_404(http: httpx.AsyncClient) -> None:
    assert_error(await http.get("/api/v1/pulls/nope"), 404, "no pull with id 'nope'")


async def test_unknown_path_and_wrong_method(http: httpx.AsyncClient) -> None:
    assert_error(await http.get("/api/v2/pulls"), 404, "no such endpoint: GET /api/v2/pulls")
    reply = await http.delete("/api/v1/pulls")
    assert_error(reply, 405, "DELETE", "/api/v1/pulls")
    reply = await http.get("/api/v1/report")
    assert_error(reply, 405, "use POST")
    assert reply.headers["allow"] == "POST"
    reply = await http.post("/api/v1/events")
    assert_error(reply, 405, "use GET")
    assert reply.headers["allow"] == "GET, HEAD"


async def test_head_of_the_event_stream_is_only_its_headers(http: httpx.AsyncClient) -> None:
    reply = await http.head("/api/v1/events")
    assert reply.status_code == 200 and reply.headers["content-type"] == "text/event-stream"


async def test_an_empty_host_listens_on_every_interface(launch: Callable[..., Running]) -> None:
    running = launch(listen=("", 0))
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{running.service.api_port}/healthz")
    assert reply.status_code == 200


async def test_probes(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/readyz")).json() == {"status": "ready"}  # correlation off


async def test_readyz_waits_for_the_watches(launch: Callable[..., Running]) -> None:
    corr = FakeCorrelator(synced=False)
    running = launch(corr)
    async with httpx.AsyncClient(base_url=running.url) as client:
        assert_error(await client.get("/readyz"), 503, "not synced")
        assert (await client.get("/healthz")).status_code == 200
        corr.synced = True
        assert (await client.get("/readyz")).status_code == 200


# -- report errors ----------------------------------------------------------------------------

VALID = body("node-a", [pull("a1", layers=[layer(0, done=10)])])


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"{", ["not valid JSON"]),
        (b"", ["not valid JSON"]),
        (b"[1, 2]", ["invalid report", "Expected `object`"]),
        (b'{"timestamp": "2026-01-01T00:00:00Z"}', ["invalid report", "`nodeName`"]),
        (b'{"nodeName": "", "timestamp": "2026-01-01T00:00:00Z"}', ["length >= 1", "nodeName"]),
        (
            b'{"nodeName": "' + b"x" * 254 + b'", "timestamp": "2026-01-01T00:00:00Z"}',
            ["length <= 253", "nodeName"],
        ),
        (b'{"nodeName": "n", "timestamp": "soon"}', ["invalid report", "timestamp"]),
        (
            b'{"nodeName": "n", "timestamp": "2026-01-01T00:00:00Z", "intervalSeconds": 0}',
            ["intervalSeconds"],
        ),
        (
            body("node-a", [pull("a1", layers=[layer(0)], phase="downloading")]),
            ["invalid report", "phase"],
        ),
        (body("node-a", [pull("a1", node="node-b")]), ["a1 is on node node-b, not on node-a"]),
        (body("node-a", [pull("a1"), pull("a1", repo=REDIS)]), ["a1 appears twice"]),
        (body("node-a", [pull("")]), ["non-empty id"]),
    ],
)
async def test_invalid_reports_are_400_and_change_nothing(
    http: httpx.AsyncClient, content: bytes, words: list[str]
) -> None:
    assert (await post(http, VALID)).status_code == 204
    before = (await http.get("/api/v1/pulls")).json()
    assert_error(await post(http, content), 400, *words)
    assert (await http.get("/api/v1/pulls")).json() == before


async def test_a_report_over_one_mib_is_413(http: httpx.AsyncClient) -> None:
    big = pull("a1", error="x" * (1 << 20))
    assert_error(await post(http, body("node-a", [big])), 413, "larger than 1 MiB")
    assert (await http.get("/api/v1/pulls")).json()["pulls"] == []


async def test_a_chunked_report_over_one_mib_is_413(http: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 65536

    reply = await http.post("/api/v1/report", content=chunks())
    assert "content-length" not in reply.request.headers
    assert_error(reply, 413, "larger than 1 MiB")
    assert reply.headers["connection"] == "close"  # the rest of the body is not read
    assert (await post(http, VALID)).status_code == 204


async def test_a_node_reporting_faster_than_twice_a_second_is_429(
    launch: Callable[..., Running],
) -> None:
    clock = Clock()
    running = launch(limiter_clock=clock)
    async with httpx.AsyncClient(base_url=running.url) as client:
        assert (await post(client, VALID)).status_code == 204
        assert (await post(client, VALID)).status_code == 204
        reply = await post(client, VALID)
        assert_error(reply, 429, "node-a", "2 times a second")
        assert reply.headers["retry-after"] == "1"
        other = body("node-b", [pull("b1", node="node-b")])
        assert (await post(client, other)).status_code == 204  # per node
        clock.advance(0.5)
        assert (await post(client, VALID)).status_code == 204
        assert (await post(client, VALID)).status_code == 429


# -- tokens -----------------------------------------------------------------------------------


async def test_agent_token(launch: Callable[..., Running]) -> None:
    running = launch(agent_token="s3cret")
    async with httpx.AsyncClient(base_url=running.url) as client:
        reply = await post(client, VALID)
        assert_error(reply, 401, "Bearer")
        assert reply.headers["www-authenticate"] == "Bearer"
        assert_error(await post(client, VALID, authorization="Bearer wrong"), 401, "not valid")
        assert_error(await post(client, VALID, authorization="Basic czNjcmV0"), 401, "Bearer")
        assert_error(await post(client, VALID, authorization="Bearer s3cret2"), 401, "not valid")
        assert (await post(client, VALID, authorization="Bearer s3cret")).status_code == 204
        assert (await client.get("/api/v1/pulls")).status_code == 200  # no read token set


async def test_read_token_guards_every_get_but_the_probes(launch: Callable[..., Running]) -> None:
    running = launch(read_token="r34d")
    async with httpx.AsyncClient(base_url=running.url) as client:
        assert (await post(client, VALID)).status_code == 204  # no agent token set
        for path in ("/api/v1/pulls", "/api/v1/pulls/a1", "/api/v1/events", "/nowhere"):
            assert_error(await client.get(path), 401, "Bearer")
            reply = await client.get(path, headers={"authorization": "Bearer nope"})
            assert_error(reply, 401, "not valid")
        for path in ("/healthz", "/readyz"):
            assert (await client.get(path)).status_code == 200
        good = {"authorization": "Bearer r34d"}
        assert (await client.get("/api/v1/pulls/a1", headers=good)).json()["id"] == "a1"


# -- metrics ----------------------------------------------------------------------------------


def sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


async def test_metrics_move(collector: Running, http: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient() as scraper:
        before = (await scraper.get(collector.metrics_url)).text
        assert sample(before, "pulltrace_pulls_total") == 0
        assert sample(before, "pulltrace_agents_connected") == 0
        assert sample(before, "pulltrace_sse_resyncs_total") == 0
        running = pull("a1", layers=[layer(0, done=100)])
        other = pull("b1", node="node-b", repo=REDIS, layers=[layer(0, done=300)])
        await post(http, body("node-a", [running]))
        await post(http, body("node-b", [other]))
        await post(http, VALID[:10])
        middle = (await scraper.get(collector.metrics_url)).text
        assert sample(middle, "pulltrace_pulls_active") == 2
        assert sample(middle, "pulltrace_agents_connected") == 2
        assert sample(middle, 'pulltrace_agent_reports_total{result="accepted"}') == 2
        assert sample(middle, 'pulltrace_agent_reports_total{result="invalid"}') == 1
        finished = pull("a1", layers=[layer(0, done=1000)], started=T0 - timedelta(seconds=2))
        failed = pull("b1", node="node-b", repo=REDIS, layers=[layer(0, done=300)], phase="failed")
        await post(http, body("node-a", [finished], at=1))
        await post(http, body("node-b", [failed], at=1))
        async with http.stream("GET", "/api/v1/events") as stream:
            assert stream.status_code == 200
            after = (await scraper.get(collector.metrics_url)).text
            assert sample(after, "pulltrace_sse_clients_active") == 1
        assert sample(after, "pulltrace_pulls_total") == 2
        assert sample(after, "pulltrace_pulls_active") == 0
        assert sample(after, "pulltrace_pull_errors_total") == 1
        assert sample(after, "pulltrace_pull_bytes_total") == 1300
        assert sample(after, "pulltrace_pull_duration_seconds_count") == 1
        assert sample(after, 'pulltrace_pull_duration_seconds_bucket{le="1.0"}') == 0
        assert sample(after, 'pulltrace_pull_duration_seconds_bucket{le="5.0"}') == 1
        assert_error(await scraper.get(collector.metrics_url.replace("/metrics", "/x")), 404)
