"""The one ``Source`` contract: every kind ``connect`` can pick is built in ``Plan.source`` and
offers both reads, and a one-shot listing is what the stream would have shown at that moment."""

from __future__ import annotations

import asyncio
from typing import get_args

import pytest

from pulltrace.client.connect import Kind, Plan
from pulltrace.client.demo import DemoSource
from pulltrace.client.endpoint import Endpoint
from pulltrace.client.kubeconfig import Cluster
from pulltrace.client.source import ConnectionState
from pulltrace.client.store import ClientStore
from tests.tui.conftest import START


@pytest.mark.parametrize("kind", get_args(Kind))
def test_every_kind_is_one_source_with_both_reads(kind: Kind) -> None:
    plan = Plan(kind, endpoint=Endpoint("http://127.0.0.1:1"), cluster=Cluster("c", None))
    source = plan.source(["shop"], node="n1", sample=0.5)
    assert callable(source.list_once) and callable(source.__aiter__)
    assert type(source).__module__ == f"pulltrace.client.{_module(kind)}"


def _module(kind: Kind) -> str:
    return {"proxy": "collector", "api": "kubeapi"}.get(kind, kind)


async def test_the_demos_listing_is_its_stream_after_the_warm_up() -> None:
    listed = DemoSource(seed=5, start=START, warmup=30.0).list_once()
    source = DemoSource(seed=5, start=START, warmup=30.0, follow=False)
    store = ClientStore()

    async def consume() -> None:
        async for message in source:
            if not isinstance(message, ConnectionState):
                store.apply(message)

    task = asyncio.create_task(consume())
    while not source.warm:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # the stream parks once it is warm: let it deliver the rest
    task.cancel()
    assert listed.pulls and sorted(p.id for p in listed.pulls) == sorted(store.views)
    assert {p.id: p for p in listed.pulls} == {v.pull.id: v.pull for v in store.views.values()}
    assert listed.nodes is not None and len(listed.nodes) == len(store.nodes or {})
