"""The live stream (what ``watch`` and ``ls --watch`` read) against a collector impostor that
misbehaves on purpose (``tests.hostile``): every misbehaviour ends the attempt with one clear
``ConnectionState`` line, in bounded time and memory, and the source goes on reconnecting.

The source runs in a child process so that its memory is its own; the event deadline is cut
to ``EVENT_DEADLINE`` seconds so that a trickle is caught in test time (the product waits three
heartbeats). Bounds are liveness checks, generous on purpose.
"""

from __future__ import annotations

import sys

import pytest

from pulltrace.client.collector import EVENTS_PATH, HEADERS_DEADLINE
from tests.hostile import HOSTILE_STREAM, FakeServer, run_bounded

MAX_RSS_MIB = 300
EVENT_DEADLINE = 2.0
SLACK = 5.0

CHILD = """
import asyncio, sys
from pulltrace.client.collector import CollectorSource
from pulltrace.client.endpoint import Endpoint
from pulltrace.client.source import ConnectionState

async def first_trouble() -> int:
    source = CollectorSource(Endpoint(sys.argv[1]), backoff=0.05, event_deadline=float(sys.argv[2]))
    async for message in source:
        if isinstance(message, ConnectionState) and message.state != "live":
            print(message.detail, file=sys.stderr)
            return 1
    return 0

sys.exit(asyncio.run(first_trouble()))
"""

SAYS = {
    "trickle": f"did not answer within {HEADERS_DEADLINE:g} s",
    "trickle-body": f"sent no event in {EVENT_DEADLINE:g} s",
    "endless-body": "",  # many short lines: whichever comes first, the size or the deadline
    "endless-line": "sent data pulltrace cannot read: more than 64 MiB",
    "garbage": "sent data pulltrace cannot read: ",
    "deep-nesting": "sent data pulltrace cannot read: ",
    "nested-error": "answered 500: an unreadable JSON error",
    "wrong-type": "sent data pulltrace cannot read: text/html, not an event stream",
    "html-5xx": "answered 502: a text/html page",
}


@pytest.mark.parametrize("name", HOSTILE_STREAM)
def test_the_stream_reports_one_line_and_stays_bounded(name: str) -> None:
    with FakeServer({EVENTS_PATH: HOSTILE_STREAM[name]}) as server:
        args = [sys.executable, "-c", CHILD, server.url, str(EVENT_DEADLINE)]
        outcome = run_bounded(args, HEADERS_DEADLINE + EVENT_DEADLINE + SLACK)
    assert outcome.code == 1, outcome
    assert outcome.max_rss_mib < MAX_RSS_MIB
    (line,) = outcome.stderr.splitlines()
    assert line.startswith(f"collector at {server.url} "), line
    assert SAYS[name] in line
    if name == "endless-body":
        assert line.endswith(("more than 64 MiB", f"sent no event in {EVENT_DEADLINE:g} s"))
    assert line.isprintable() and len(line) < 400, line
