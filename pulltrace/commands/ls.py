"""``pulltrace ls``: one listing, or with ``--watch`` a kubectl-style stream of changed rows.

Every source is read through the same ``Plan`` as ``watch``; filters are the TUI's own
(``Query``), so ``ls -n shop`` and ``:ns shop`` agree on what they show.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple, TextIO

from pulltrace import render
from pulltrace.client.connect import Plan
from pulltrace.client.source import ConnectionState
from pulltrace.client.store import ClientStore, Query, degraded, order
from pulltrace.commands import output
from pulltrace.model import NodeStatus, PullStatus, encode

WATCH_REPRINT = 2.0  # seconds between two progress lines of one pull; phase changes at once


class Listing(NamedTuple):
    pulls: list[PullStatus]
    """Filtered and ordered as the table shows them."""
    warnings: list[str]
    """Lines for stderr: nodes whose agent cannot read containerd (their pulls are listed as
    they were when it last could, and would otherwise look merely slow), or why the nodes'
    health could not be read."""


def list_pulls(plan: Plan, query: Query, sample: float) -> Listing:
    """Synchronous: a collector listing (the common, scripted case) never starts an event loop.
    The source's own errors (``CollectorError``, ``KubeApiError``, ``ContainerdError``...)
    reach the user unwrapped."""
    namespaces = [query.namespace] if query.namespace else []
    source = plan.source(namespaces, node=query.node, sample=sample)
    snapshot = source.list_once()
    pulls = order(snapshot.pulls, query, datetime.now(UTC))
    if snapshot.nodes_error:
        why = render.message_text(snapshot.nodes_error)
        return Listing(pulls, [f"warning: cannot read the nodes' health: {why}"])
    return Listing(pulls, [degraded_line(n) for n in degraded(snapshot.nodes or [], query.node)])


def print_listing(plan: Plan, query: Query, fmt: str, sample: float) -> None:
    """``ls`` without ``--watch``: the plan's notice and the nodes' warnings on stderr, the
    listing on stdout."""
    if plan.notice:
        print(f"pulltrace: {plan.notice}", file=sys.stderr)
    listing = list_pulls(plan, query, sample)
    for line in listing.warnings:
        print(line, file=sys.stderr)
    sys.stdout.write(output.format_pulls(listing.pulls, fmt))


def degraded_line(node: NodeStatus) -> str:
    return f"warning: node {render.printable(node.node_name)}: {render.printable(node.error)}"


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
    async for message in plan.source(namespaces, node=query.node):
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
