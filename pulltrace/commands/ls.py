"""``pulltrace ls``: one listing, or with ``--watch`` a kubectl-style stream of changed rows.

Every source is read through the same ``Plan`` as ``watch``; filters are the TUI's own
(``Query``), so ``ls -n shop`` and ``:ns shop`` agree on what they show.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from pulltrace import render
from pulltrace.client.connect import Plan
from pulltrace.client.source import ConnectionState
from pulltrace.client.store import ClientStore, Query, degraded, order
from pulltrace.commands import output
from pulltrace.errors import SourceError
from pulltrace.model import NodeStatus, PullStatus, encode

WATCH_REPRINT = 2.0  # seconds between two progress lines of one pull; phase changes at once


class ListingError(SourceError):
    """Raised by ``list_pulls`` when the cluster listing times out; the sources' own errors
    (``CollectorError``, ``KubeApiError``, ``ContainerdError``) reach the user unwrapped."""


def list_pulls(plan: Plan, query: Query, sample: float) -> list[PullStatus]:
    """Synchronous: a collector listing (the common, scripted case) never starts an event loop."""
    if plan.kind in ("collector", "proxy"):
        from pulltrace.client.rest import get_pulls

        assert plan.endpoint is not None
        params = {"node": query.node} if query.node else {}
        if query.namespace:
            params["namespace"] = query.namespace
        pulls = get_pulls(plan.endpoint, params)
    elif plan.kind == "api":
        import asyncio

        from pulltrace.client.kubeapi import list_once

        assert plan.cluster is not None
        namespaces = [query.namespace] if query.namespace else []
        try:
            pulls = asyncio.run(list_once(plan.cluster, namespaces))
        except TimeoutError as err:
            raise ListingError(str(err)) from None
    elif plan.kind == "containerd":
        from pulltrace import local

        pulls = local.sample(plan.containerd, plan.containerd_namespace, sample)
    else:
        import asyncio

        pulls = asyncio.run(_demo_pulls(plan.seed))
    return order(pulls, query, datetime.now(UTC))


def node_warnings(plan: Plan, query: Query) -> list[str]:
    """A line for each node whose agent cannot read containerd: its pulls are listed as they
    were when it last could, and would otherwise look merely slow. Only a collector has
    agents to ask about."""
    if plan.kind not in ("collector", "proxy"):
        return []
    from pulltrace.client.rest import CollectorError, get_nodes

    assert plan.endpoint is not None
    try:
        nodes = get_nodes(plan.endpoint)
    except CollectorError as err:
        return [f"warning: cannot read the nodes' health: {render.message_text(str(err))}"]
    return [degraded_line(n) for n in degraded(nodes or [], query.node)]


def degraded_line(node: NodeStatus) -> str:
    return f"warning: node {render.printable(node.node_name)}: {render.printable(node.error)}"


async def _demo_pulls(seed: int) -> list[PullStatus]:
    """The demo after its warm-up: the same busy cluster ``watch --demo`` opens on."""
    import asyncio

    from pulltrace.client.demo import DemoSource

    source = DemoSource(seed, follow=False)
    store = ClientStore()

    async def consume() -> None:
        async for message in source:
            if not isinstance(message, ConnectionState):
                store.apply(message)

    task = asyncio.create_task(consume())
    while not source.warm and not task.done():
        await asyncio.sleep(0.01)
    task.cancel()
    return store.pulls()


async def watch_rows(
    plan: Plan,
    query: Query,
    fmt: str,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Prints the table once, then a row for each pull as it changes, like ``kubectl get -w``;
    JSON output is one PullStatus per line. Runs until interrupted."""
    store = ClientStore()
    printed: dict[str, tuple[str, float]] = {}
    warned: dict[str, str] = {}
    header_done = False
    namespaces = [query.namespace] if query.namespace else []
    async for message in plan.source(namespaces):
        if isinstance(message, ConnectionState):
            if message.state != "live":
                detail = render.message_text(message.detail)
                print(f"pulltrace: {message.state}: {detail}", file=err, flush=True)
            continue
        store.apply(message)
        now_degraded = {n.node_name: n for n in degraded((store.nodes or {}).values(), query.node)}
        for name, node in now_degraded.items():
            if warned.get(name) != node.error:
                print(degraded_line(node), file=err, flush=True)
        warned = {name: node.error for name, node in now_degraded.items()}
        changed, _ = store.drain()
        now = clock()
        rows = []
        for pull in order(store.pulls(), query, datetime.now(UTC)):
            if pull.id not in changed and pull.id in printed:
                continue
            last_phase, last_at = printed.get(pull.id, ("", -1e18))
            if pull.phase == last_phase and now - last_at < WATCH_REPRINT:
                continue
            printed[pull.id] = (pull.phase, now)
            rows.append(pull)
        if not rows:
            continue
        if fmt == "json":
            out.write("".join(output.terminal_safe_json(encode(p).decode()) + "\n" for p in rows))
        else:
            table = output.render_table(rows, wide=fmt == "wide").splitlines()
            out.write("\n".join(table if not header_done else table[1:]) + "\n")
            header_done = True
        out.flush()
