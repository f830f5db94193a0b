"""The history, update and tag endpoints over real sockets (uvicorn on loopback, httpx), with
the history in SQLite and in PostgreSQL: every endpoint and every error path, and the reload
of finished pulls after a restart."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.collector.conftest import Running, body, layer, pull
from tests.collector.test_api import assert_error

DIUN = Path(__file__).parent / "diun"
REDIS = "docker.io/library/redis"
NGINX_TAG = "docker.io/library/nginx:1.27"
Launch = Callable[..., Running]


@pytest.fixture
def start(launch: Launch, where: dict[str, Any]) -> Callable[..., Running]:
    """A collector whose history is in the back end under test; call again to restart it on
    the same database. The reports' pulls finished in January 2026: the retention keeps them."""

    def _start(**kw: Any) -> Running:
        kw.setdefault("history_retention", 5 * 365 * 86400.0)
        return launch(**where, reports_per_second=1000.0, history_flush_interval=0.05, **kw)

    return _start


@pytest.fixture
async def http(start: Callable[..., Running]) -> AsyncIterator[httpx.AsyncClient]:
    running = start()
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
        yield client


async def report(client: httpx.AsyncClient, node: str, pulls: list[Any]) -> None:
    reply = await client.post("/api/v1/report", content=body(node, pulls))
    assert reply.status_code == 204, reply.text


async def history(client: httpx.AsyncClient, query: str = "") -> dict[str, Any]:
    reply = await client.get(f"/api/v1/history{query}")
    assert reply.status_code == 200, reply.text
    doc: dict[str, Any] = reply.json()
    return doc


async def until_recorded(client: httpx.AsyncClient, count: int, query: str = "") -> list[Any]:
    """The writer flushes in the background: wait for the rows, as a client would."""
    deadline = time.monotonic() + 30
    while True:
        pulls: list[Any] = (await history(client, query))["pulls"]
        if len(pulls) >= count:
            return pulls
        assert time.monotonic() < deadline, f"only {len(pulls)} of {count} pulls recorded"
        await asyncio.sleep(0.02)


def finished(pull_id: str, *, node: str = "node-a", failed: bool = False, **kw: Any) -> Any:
    if failed:
        return pull(pull_id, node=node, layers=[layer(0, done=10)], phase="failed", error="boom",
                    **kw)  # fmt: skip
    return pull(pull_id, node=node, layers=[layer(0, done=1000), layer(1, cached=True)], **kw)


# -- history -----------------------------------------------------------------------------------


async def test_finished_pulls_are_recorded_with_their_figures(http: httpx.AsyncClient) -> None:
    await report(http, "node-a", [finished("a1"), pull("a2", layers=[layer(0, done=10)])])
    await report(http, "node-b", [finished("b1", node="node-b", failed=True, repo=REDIS,
                                           digest="sha256:" + "2" * 64)])  # fmt: skip
    pulls = await until_recorded(http, 2)
    doc = await history(http)
    assert doc["schemaVersion"] == "v1" and doc["continue"] is None
    by_id = {p["id"]: p for p in pulls}
    assert set(by_id) == {"a1", "b1"}  # a2 is still pulling
    a1 = by_id["a1"]
    assert a1["phase"] == "completed" and a1["nodeName"] == "node-a"
    assert a1["downloadedBytes"] == 1000 and a1["cachedBytes"] == 1000
    assert a1["layerCount"] == 2 and a1["layersCached"] == 1 and a1["layers"] == []
    assert a1["durationSeconds"] == 1.0  # the layer completed a second after the start
    assert a1["averageBytesPerSec"] == 1000.0 and a1["peakBytesPerSec"] >= 1000.0
    assert by_id["b1"]["phase"] == "failed" and by_id["b1"]["error"] == "boom"


async def test_pages_and_filters(http: httpx.AsyncClient) -> None:
    await report(http, "node-a", [finished(f"a{i}", digest=f"sha256:{i:064}") for i in range(5)])
    await report(http, "node-b", [finished("b1", node="node-b", failed=True, repo=REDIS)])
    await until_recorded(http, 6)
    seen: list[str] = []
    query = "?limit=2"
    while True:
        doc = await history(http, query)
        seen += [p["id"] for p in doc["pulls"]]
        if doc["continue"] is None:
            break
        query = f"?limit=2&continue={doc['continue']}"
    assert sorted(seen) == ["a0", "a1", "a2", "a3", "a4", "b1"]
    assert [p["id"] for p in (await history(http, "?node=node-b"))["pulls"]] == ["b1"]
    assert [p["id"] for p in (await history(http, "?image=redis"))["pulls"]] == ["b1"]
    assert [p["id"] for p in (await history(http, "?phase=failed"))["pulls"]] == ["b1"]
    assert len((await history(http, "?phase=completed&node="))["pulls"]) == 5
    assert (await history(http, "?since=2026-01-02T00:00:00Z"))["pulls"] == []
    assert len((await history(http, "?until=2026-01-02T00:00:00Z"))["pulls"]) == 6
    assert (await history(http, "?since=1h"))["pulls"] == []  # they finished in 2026-01


async def test_stats(http: httpx.AsyncClient) -> None:
    await report(http, "node-a", [finished("a1"), finished("a2", digest="sha256:" + "3" * 64)])
    await report(http, "node-b", [finished("b1", node="node-b", failed=True, repo=REDIS)])
    await until_recorded(http, 3)
    reply = await http.get("/api/v1/history/stats?by=node")
    assert reply.status_code == 200, reply.text
    doc = reply.json()
    assert doc["schemaVersion"] == "v1" and doc["by"] == "node" and doc["since"] is None
    groups = {g["key"]: g for g in doc["groups"]}
    assert groups["node-a"]["count"] == 2 and groups["node-a"]["failures"] == 0
    assert groups["node-a"]["bytes"] == 2000
    assert groups["node-a"]["durationSeconds"] == {"p50": 1.0, "p95": 1.0, "max": 1.0}
    assert groups["node-b"]["failures"] == 1
    repos = (await http.get("/api/v1/history/stats?by=repository")).json()["groups"]
    assert {g["key"] for g in repos} == {"docker.io/library/nginx", REDIS}
    images = (await http.get("/api/v1/history/stats")).json()
    # Without Kubernetes, an image is its digest reference: one group per digest.
    assert images["by"] == "image" and len(images["groups"]) == 3
    recent = (await http.get("/api/v1/history/stats?since=7d")).json()
    assert recent["groups"] == [] and recent["since"] is not None


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("?pod=x", ("unknown query parameter", "'pod'")),
        ("?phase=pulling", ("phase must be completed or failed",)),
        ("?limit=0", ("limit",)),
        ("?limit=1001", ("limit",)),
        ("?limit=-1", ("limit",)),
        ("?limit=1e3", ("limit",)),
        ("?since=yesterday", ("since must be a duration",)),
        ("?until=2026-13-01", ("until",)),
        ("?continue=bm9wZQ", ("continue",)),
        ("?continue=%00%01", ("control characters",)),
        ("?image=" + "x" * 513, ("image is too long",)),
        ("?node=a&node=b", ("given twice",)),
        ("?node=%1b%5b2J", ("control characters",)),
        ("?" + "&".join(f"p{i}=1" for i in range(200)), ("unknown",)),
    ],
)
async def test_bad_history_queries(http: httpx.AsyncClient, query: str, words: tuple[str]) -> None:
    assert_error(await http.get(f"/api/v1/history{query}"), 400, *words)


@pytest.mark.parametrize(
    ("query", "words"),
    [("?by=pod", ("by must be one of",)), ("?since=-1h", ("since",)), ("?image=x", ("unknown",))],
)
async def test_bad_stats_queries(http: httpx.AsyncClient, query: str, words: tuple[str]) -> None:
    assert_error(await http.get(f"/api/v1/history/stats{query}"), 400, *words)


async def test_a_restart_reloads_recent_finished_pulls(start: Callable[..., Running]) -> None:
    # The live store keeps finished pulls for history_ttl from now: a long one keeps 2026-01.
    first = start(history_ttl=10 * 365 * 86400.0)
    async with httpx.AsyncClient(base_url=first.url, timeout=10) as client:
        await report(client, "node-a", [finished("a1"), pull("a2", layers=[layer(0, done=10)])])
        await until_recorded(client, 1)
    first.stop()
    second = start(history_ttl=10 * 365 * 86400.0)
    async with httpx.AsyncClient(base_url=second.url, timeout=10) as client:
        listed = (await client.get("/api/v1/pulls")).json()["pulls"]
        assert [(p["id"], p["phase"]) for p in listed] == [("a1", "completed")]
        assert listed[0]["layerCount"] == 2 and "durationSeconds" not in listed[0]
        # The agent still lists it: it joins the restored row rather than adding one.
        await report(client, "node-a", [finished("a1")])
        listed = (await client.get("/api/v1/pulls")).json()["pulls"]
        assert [p["id"] for p in listed] == ["a1"]
        assert len(await until_recorded(client, 1)) == 1


async def test_a_restart_leaves_old_pulls_in_the_history_only(
    start: Callable[..., Running],
) -> None:
    first = start()
    async with httpx.AsyncClient(base_url=first.url, timeout=10) as client:
        await report(client, "node-a", [finished("a1")])
        await until_recorded(client, 1)
    first.stop()
    second = start()  # 30 minutes of live history: 2026-01 is long gone
    async with httpx.AsyncClient(base_url=second.url, timeout=10) as client:
        assert (await client.get("/api/v1/pulls")).json()["pulls"] == []
        assert [p["id"] for p in (await history(client))["pulls"]] == ["a1"]


async def test_without_a_database_the_endpoints_say_so(collector: Running) -> None:
    async with httpx.AsyncClient(base_url=collector.url, timeout=10) as client:
        for method, path in [
            ("GET", "/api/v1/history"),
            ("GET", "/api/v1/history/stats"),
            ("POST", "/api/v1/webhooks/diun"),
            ("GET", "/api/v1/updates"),
            ("GET", "/api/v1/tags"),
        ]:
            assert_error(await client.request(method, path), 503, "--data-dir", "--database")


# -- DIUN, updates, tags -----------------------------------------------------------------------


def diun(name: str) -> bytes:
    return (DIUN / name).read_bytes()


@pytest.mark.parametrize("sample", sorted(p.name for p in DIUN.glob("*.json")))
async def test_diun_documented_payloads_are_stored(http: httpx.AsyncClient, sample: str) -> None:
    sent = json.loads(diun(sample))
    reply = await http.post("/api/v1/webhooks/diun", content=diun(sample),
                            headers={"content-type": "application/json"})  # fmt: skip
    assert reply.status_code == 204 and reply.content == b""
    (update,) = (await http.get("/api/v1/updates")).json()["updates"]
    assert update["image"] == sent["image"] and update["digest"] == sent["digest"]
    assert update["status"] == sent["status"] and update["provider"] == sent["provider"]
    assert update["hubLink"] == sent["hub_link"] and update["platform"] == sent["platform"]
    assert update["created"].startswith(sent["created"][:19])
    assert update["acknowledged"] is False and update["tag"] is None and update["receivedAt"]


async def test_the_webhook_secret_is_checked(start: Callable[..., Running]) -> None:
    running = start(webhook_secret="s3cret-value", read_token="reader")
    sample = diun("webhook-4.0.0.json")
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
        url = "/api/v1/webhooks/diun"
        assert_error(await client.post(url, content=sample), 401, "webhook secret")
        assert_error(
            await client.post(url, content=sample, headers={"authorization": "s3cret"}), 401
        )
        assert_error(
            await client.post(url, content=sample, headers={"authorization": "Bearer reader"}),
            401,
        )
        ok = await client.post(url, content=sample, headers={"authorization": "s3cret-value"})
        assert ok.status_code == 204
        # The webhook is not behind the read token; everything else still is.
        assert (await client.get("/api/v1/updates")).status_code == 401
        listed = await client.get("/api/v1/updates", headers={"authorization": "Bearer reader"})
        assert [u["image"] for u in listed.json()["updates"]] == ["docker.io/crazymax/diun:latest"]


@pytest.mark.parametrize(
    ("content", "status", "words"),
    [
        (b"{not json", 400, ("not valid JSON",)),
        (b"", 400, ("not valid JSON",)),
        (b"[]", 400, ("invalid body",)),
        (b'{"status":"new"}', 400, ("image",)),
        (b'{"image":""}', 400, ("image",)),
        (b'{"image":7}', 400, ("image",)),
        (b'{"image":"' + b"x" * 513 + b'"}', 400, ("image",)),
        (b'{"image":"nginx\\u001b[2J"}', 400, ("control characters",)),
        (b'{"image":"nginx","created":"soon"}', 400, ("created",)),
        (b'{"image":"nginx","metadata":{"a":{"b":1}}}', 400, ("metadata",)),
        (b'{"image":"' + b"x" * 70000 + b'"}', 413, ("larger than",)),
    ],
)
async def test_bad_webhook_bodies(
    http: httpx.AsyncClient, content: bytes, status: int, words: tuple[str]
) -> None:
    assert_error(await http.post("/api/v1/webhooks/diun", content=content), status, *words)
    assert (await http.get("/api/v1/updates")).json()["updates"] == []


async def test_an_undeclared_oversized_body_is_refused(http: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"image":"'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    assert_error(await http.post("/api/v1/webhooks/diun", content=chunks()), 413)


async def test_updates_are_dismissed_and_reopened(http: httpx.AsyncClient) -> None:
    notice = diun("kubernetes-issue-12.json")
    assert (await http.post("/api/v1/webhooks/diun", content=notice)).status_code == 204
    path = f"/api/v1/updates/{quote(NGINX_TAG, safe='')}"
    reply = await http.patch(path, json={"acknowledged": True})
    assert reply.status_code == 204, reply.text
    assert (await http.get("/api/v1/updates")).json()["updates"][0]["acknowledged"] is True
    assert (await http.post("/api/v1/webhooks/diun", content=notice)).status_code == 204
    (update,) = (await http.get("/api/v1/updates")).json()["updates"]
    assert update["acknowledged"] is False  # a repeat notice re-opens it
    unknown = f"/api/v1/updates/{quote('docker.io/library/redis:7', safe='')}"
    assert_error(await http.patch(unknown, json={"acknowledged": True}), 404, "redis:7")
    assert_error(await http.patch(path, json={"acknowledged": "yes"}), 400, "acknowledged")
    assert_error(await http.patch(path, json={"ack": True}), 400)
    assert_error(await http.patch(path, content=b"{"), 400, "not valid JSON")
    assert_error(await http.get("/api/v1/updates?all=1"), 400, "unknown query parameter")


async def test_tags(http: httpx.AsyncClient) -> None:
    notice = diun("kubernetes-issue-12.json")
    assert (await http.post("/api/v1/webhooks/diun", content=notice)).status_code == 204
    created = await http.post("/api/v1/tags", json={"name": "production"})
    assert created.status_code == 201, created.text
    tag = created.json()
    assert tag["name"] == "production" and isinstance(tag["id"], int)
    assert_error(await http.post("/api/v1/tags", json={"name": "production"}), 409, "exists")
    assert_error(await http.post("/api/v1/tags", json={"name": ""}), 400)
    assert_error(await http.post("/api/v1/tags", json={"name": "   "}), 400, "blank")
    assert_error(await http.post("/api/v1/tags", json={"name": "x" * 64}), 400)
    assert_error(await http.post("/api/v1/tags", json={"name": "a\nb"}), 400, "control")
    assert_error(await http.post("/api/v1/tags", json={"name": "ml", "x": 1}), 400)
    ml = (await http.post("/api/v1/tags", json={"name": "ml"})).json()
    listed = (await http.get("/api/v1/tags")).json()
    assert listed == {"schemaVersion": "v1", "tags": [ml, tag]}

    path = f"/api/v1/updates/{quote(NGINX_TAG, safe='')}/tag"
    assert (await http.put(path, json={"tagId": tag["id"]})).status_code == 204
    (update,) = (await http.get("/api/v1/updates")).json()["updates"]
    assert update["tag"] == tag
    assert_error(await http.put(path, json={"tagId": 999999}), 404, "no tag")
    assert_error(await http.put(path, json={"tagId": 0}), 400)
    assert_error(await http.put(path, json={"tagId": "prod"}), 400)
    assert_error(await http.put(path, json={}), 400, "tagId")
    other = f"/api/v1/updates/{quote('docker.io/library/redis:7', safe='')}/tag"
    assert_error(await http.put(other, json={"tagId": tag["id"]}), 404, "no update")

    assert (await http.delete(f"/api/v1/tags/{tag['id']}")).status_code == 204
    assert (await http.get("/api/v1/updates")).json()["updates"][0]["tag"] is None
    assert_error(await http.delete(f"/api/v1/tags/{tag['id']}"), 404, "no tag")
    assert_error(await http.delete("/api/v1/tags/abc"), 404)
    assert_error(await http.delete("/api/v1/tags/" + "9" * 40), 404)
    assert (await http.put(path, json={"tagId": ml["id"]})).status_code == 204
    assert (await http.put(path, json={"tagId": None})).status_code == 204
    assert (await http.get("/api/v1/updates")).json()["updates"][0]["tag"] is None
    assert_error(await http.post("/api/v1/tags", content=b"x" * 70000), 413)
