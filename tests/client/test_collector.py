"""The collector source over real sockets: its one-shot listing with one-line errors, and the
SSE stream that resumes, reports its connection state and survives a collector restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from pulltrace.client.collector import CollectorSource
from pulltrace.client.endpoint import CollectorError, Endpoint
from pulltrace.client.source import ConnectionState, Event, Message, Snapshot
from testkit.kube.tls import TlsFront
from testkit.util import free_port
from tests.collector.conftest import FAST, Running, body, layer, pull, start


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def collector(port: int) -> Iterator[Running]:
    running = start(replace(FAST, listen=("127.0.0.1", port), read_token="reader"))
    yield running
    running.stop()


def endpoint(port: int, token: str = "reader") -> Endpoint:
    return Endpoint(f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"})


def post(port: int, node: str, progress: int) -> None:
    pulls = [pull("p1", node=node, layers=[layer(0, 1000, progress)])]
    httpx.post(
        f"http://127.0.0.1:{port}/api/v1/report", content=body(node, pulls)
    ).raise_for_status()


async def until(stream: AsyncIterator[Message], wanted: type, timeout: float = 10.0) -> Message:
    async def find() -> Message:
        async for message in stream:
            if isinstance(message, wanted):
                return message
        raise AssertionError("stream ended")

    return await asyncio.wait_for(find(), timeout)


def listed(endpoint: Endpoint, node: str = "") -> Snapshot:
    return CollectorSource(endpoint, node=node).list_once()


async def test_list_once_reads_what_agents_reported(collector: Running, port: int) -> None:
    await asyncio.to_thread(post, port, "node-a", 400)
    snapshot = await asyncio.to_thread(listed, endpoint(port))
    assert [(p.node_name, p.downloaded_bytes) for p in snapshot.pulls] == [("node-a", 400)]
    assert [n.node_name for n in snapshot.nodes or []] == ["node-a"]
    assert (await asyncio.to_thread(listed, endpoint(port), "node-b")).pulls == []


async def test_list_once_errors_are_one_line(collector: Running, port: int) -> None:
    with pytest.raises(CollectorError) as refused:
        await asyncio.to_thread(listed, endpoint(port, token="wrong"))
    assert str(refused.value).startswith(f"collector at http://127.0.0.1:{port} refused")
    assert "401" in str(refused.value)

    closed = free_port()
    with pytest.raises(CollectorError) as unreachable:
        await asyncio.to_thread(listed, endpoint(closed))
    assert str(unreachable.value).startswith("cannot reach the collector at")
    for err in (refused.value, unreachable.value):
        assert "\n" not in str(err)


async def test_stream_survives_a_collector_restart(collector: Running, port: int) -> None:
    source = CollectorSource(endpoint(port), backoff=0.05)
    stream = aiter(source)
    try:
        assert await until(stream, ConnectionState) == ConnectionState(
            "live", f"http://127.0.0.1:{port}"
        )
        first = await until(stream, Snapshot)
        assert isinstance(first, Snapshot) and first.pulls == []

        await asyncio.to_thread(post, port, "node-a", 400)
        started = await until(stream, Event)
        assert isinstance(started, Event) and started.event.type == "pull.started"
        seen_id = source.last_event_id
        assert seen_id

        await asyncio.to_thread(collector.stop)
        lost = await until(stream, ConnectionState)
        assert isinstance(lost, ConnectionState) and lost.state == "reconnecting"
        # The gzip stream ends without a trailer: a clean end for httpx, not a decoding error.
        assert lost.detail == "the collector closed the stream"

        restarted = start(replace(FAST, listen=("127.0.0.1", port), read_token="reader"))
        try:
            await asyncio.to_thread(post, port, "node-b", 100)
            assert await until(stream, ConnectionState) == ConnectionState(
                "live", f"http://127.0.0.1:{port}"
            )
            # the new collector cannot replay the old one's ids: a fresh snapshot instead
            again = await until(stream, Snapshot)
            assert isinstance(again, Snapshot)
            assert [p.node_name for p in again.pulls] == ["node-b"]
            assert source.last_event_id != seen_id
        finally:
            restarted.stop()
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def test_wrong_token_goes_offline_without_raising(collector: Running, port: int) -> None:
    states: list[ConnectionState] = []
    source = CollectorSource(endpoint(port, token="wrong"), backoff=0.01)
    stream = aiter(source)
    try:
        while len(states) < 3:
            message = await until(stream, ConnectionState)
            assert isinstance(message, ConnectionState)
            states.append(message)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert [s.state for s in states] == ["reconnecting", "reconnecting", "offline"]
    assert "refused the credentials (401)" in states[-1].detail


async def test_list_once_and_stream_over_tls(collector: Running, port: int, tmp_path: Path) -> None:
    """HTTPS checked against a CA, as through a real API server: the one-shot GET (h11 over
    ``ssl``) and the stream (httpx) both verify the chain, and an unknown CA is one line."""
    await asyncio.to_thread(post, port, "node-a", 400)
    with TlsFront(f"127.0.0.1:{port}", tmp_path) as front:
        url = f"https://{front.host_port}"
        trusted = Endpoint(url, {"Authorization": "Bearer reader"}, verify=str(front.ca))
        snapshot = await asyncio.to_thread(listed, trusted)
        assert [p.node_name for p in snapshot.pulls] == ["node-a"]

        stream = aiter(CollectorSource(trusted, backoff=0.05))
        try:
            assert await until(stream, ConnectionState) == ConnectionState("live", url)
            first = await until(stream, Snapshot)
            assert isinstance(first, Snapshot) and len(first.pulls) == 1
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

        with pytest.raises(CollectorError) as untrusted:
            await asyncio.to_thread(listed, Endpoint(url, {"Authorization": "Bearer reader"}))
    message = str(untrusted.value)
    assert message.startswith(f"cannot reach the collector at {url}: ")
    assert "CERTIFICATE_VERIFY_FAILED" in message and "\n" not in message


async def test_list_once_follows_every_page_of_the_listing() -> None:
    """A collector pages its listing (here two pulls a page): the source reads to the end."""
    port = free_port()
    running = start(replace(FAST, listen=("127.0.0.1", port), read_token="reader", max_list=2))
    try:
        pulls = [
            pull(f"p{i}", node="node-a", digest=f"sha256:{i:064x}", layers=[layer(i, 1000, 10)])
            for i in range(5)
        ]
        reply = await asyncio.to_thread(
            httpx.post, f"http://127.0.0.1:{port}/api/v1/report", content=body("node-a", pulls)
        )
        reply.raise_for_status()
        snapshot = await asyncio.to_thread(listed, endpoint(port))
        assert sorted(p.id for p in snapshot.pulls) == [f"p{i}" for i in range(5)]
    finally:
        running.stop()
