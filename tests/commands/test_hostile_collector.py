"""``ls`` and ``wait`` against a collector impostor that misbehaves on purpose (``tests.hostile``):
whatever it does, the command ends by its deadline with one clear line on stderr and a
non-zero exit, in bounded memory; never a traceback, a hang or a heap.

The bounds are liveness checks, generous on purpose (the deadline plus 5 s, 300 MiB), not
timings: a command that hangs is killed at the bound and fails here.
"""

from __future__ import annotations

import pytest

from pulltrace.client.collector import EVENTS_PATH, NODES_PATH, PULLS_PATH
from pulltrace.client.endpoint import REQUEST_DEADLINE
from pulltrace.errors import EXIT_ERROR, EXIT_TIMEOUT, EXIT_WAIT_ERROR
from tests.hostile import EMPTY_LIST, HOSTILE_REST, HOSTILE_STREAM, FakeServer, Outcome, run_bounded
from tests.hostile import pulltrace as command

MAX_RSS_MIB = 300
SLACK = 5.0
WAIT_TIMEOUT = 3.0

SAYS = {
    "trickle": f"did not answer within {REQUEST_DEADLINE:g} s",
    "trickle-body": f"did not answer within {REQUEST_DEADLINE:g} s",
    "endless-body": "sent data pulltrace cannot read: more than 64 MiB",
    "endless-line": "sent data pulltrace cannot read: more than 64 MiB",
    "garbage": "sent data pulltrace cannot read: ",
    "deep-nesting": "sent data pulltrace cannot read: ",
    "nested-error": "answered 500: an unreadable JSON error",
    "wrong-type": "sent data pulltrace cannot read: text/html, not JSON",
    "html-5xx": "answered 502: a text/html page",
}
"""What the one line says for each misbehaviour of a one-shot GET."""


def one_clear_line(outcome: Outcome, url: str, says: str) -> str:
    assert "Traceback" not in outcome.stderr, outcome.stderr
    (line,) = outcome.stderr.splitlines()
    assert line.startswith(f"pulltrace: collector at {url} "), line
    assert says in line
    assert line.isprintable() and len(line) < 400, line
    return line


@pytest.mark.parametrize("name", HOSTILE_REST)
def test_ls_ends_with_one_line(name: str) -> None:
    behave = HOSTILE_REST[name]
    with FakeServer({PULLS_PATH: behave, NODES_PATH: behave}) as server:
        outcome = run_bounded(command("ls", "--server", server.url), REQUEST_DEADLINE + SLACK)
    assert outcome.code == EXIT_ERROR, outcome
    assert outcome.max_rss_mib < MAX_RSS_MIB
    one_clear_line(outcome, server.url, SAYS[name])
    assert outcome.stdout == ""


@pytest.mark.parametrize("name", HOSTILE_REST)
def test_wait_ends_with_one_line(name: str) -> None:
    behave = HOSTILE_REST[name]
    with FakeServer({PULLS_PATH: behave, EVENTS_PATH: behave}) as server:
        args = command("wait", "--server", server.url, "-n", "shop", "web")
        outcome = run_bounded(args, REQUEST_DEADLINE + SLACK)
    assert outcome.code == EXIT_WAIT_ERROR, outcome
    assert outcome.max_rss_mib < MAX_RSS_MIB
    one_clear_line(outcome, server.url, SAYS[name])


def test_wait_timeout_is_hard_while_the_listing_trickles() -> None:
    with FakeServer({PULLS_PATH: HOSTILE_REST["trickle"]}) as server:
        args = command("wait", "--server", server.url, "web", "--timeout", f"{WAIT_TIMEOUT:g}s")
        outcome = run_bounded(args, WAIT_TIMEOUT + SLACK)
    assert outcome.code == EXIT_TIMEOUT, outcome
    assert outcome.stderr == ""
    assert outcome.stdout.splitlines()[-1].endswith(
        f"timed out: no answer from collector {server.url}"
    )


@pytest.mark.parametrize("name", HOSTILE_STREAM)
def test_wait_timeout_is_hard_whatever_the_stream_does(name: str) -> None:
    """The listing answers, so ``wait`` follows the stream until its deadline: a stream that
    trickles, floods or sends garbage neither holds it nor grows it."""
    routes = {PULLS_PATH: EMPTY_LIST, EVENTS_PATH: HOSTILE_STREAM[name]}
    with FakeServer(routes) as server:
        args = command("wait", "--server", server.url, "web", "--timeout", f"{WAIT_TIMEOUT:g}s")
        outcome = run_bounded(args, WAIT_TIMEOUT + SLACK)
        assert any(r.startswith(EVENTS_PATH) for r in server.requests)
    assert outcome.code == EXIT_TIMEOUT, outcome
    assert outcome.max_rss_mib < MAX_RSS_MIB
    assert outcome.stderr == ""
    assert "timed out: nothing matched web" in outcome.stdout
    assert "\x1b" not in outcome.stdout


def test_a_token_with_a_newline_is_one_line_that_does_not_quote_it() -> None:
    with FakeServer({PULLS_PATH: EMPTY_LIST}) as server:
        args = command("ls", "--server", server.url, "--token", "s3cret\n")
        outcome = run_bounded(args, REQUEST_DEADLINE + SLACK)
        assert server.requests == []  # refused before anything was sent
    assert outcome.code == EXIT_ERROR, outcome
    (line,) = outcome.stderr.splitlines()
    assert "trailing newline" in line and "s3cret" not in line
