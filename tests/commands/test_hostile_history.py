"""``history``, ``stats`` and ``updates`` against a collector impostor that misbehaves on purpose
(``tests.hostile``): whatever it does, the command ends by its deadline with one clear line on
stderr and exit 2, in bounded memory; never a traceback, a hang or a heap."""

from __future__ import annotations

import pytest

from pulltrace.client.endpoint import REQUEST_DEADLINE
from pulltrace.client.history import HISTORY_PATH, STATS_PATH, UPDATES_PATH
from pulltrace.errors import EXIT_ERROR
from tests.commands.test_hostile_collector import MAX_RSS_MIB, SAYS, SLACK, one_clear_line
from tests.hostile import HOSTILE_REST, FakeServer, answer, run_bounded
from tests.hostile import pulltrace as command

QUICK = ("garbage", "deep-nesting", "nested-error", "wrong-type", "html-5xx", "endless-body")
"""The misbehaviours that end before the deadline; ``history`` meets the slow ones too."""
CASES = [("history", HISTORY_PATH, name) for name in HOSTILE_REST]
CASES += [(cmd, path, name) for cmd, path in (("stats", STATS_PATH), ("updates", UPDATES_PATH))
          for name in QUICK]  # fmt: skip


@pytest.mark.parametrize(("cmd", "path", "name"), CASES)
def test_each_command_ends_with_one_line(cmd: str, path: str, name: str) -> None:
    with FakeServer({path: HOSTILE_REST[name]}) as server:
        outcome = run_bounded(command(cmd, "--server", server.url), REQUEST_DEADLINE + SLACK)
    assert outcome.code == EXIT_ERROR, outcome
    assert outcome.max_rss_mib < MAX_RSS_MIB
    one_clear_line(outcome, server.url, SAYS[name])
    assert outcome.stdout == ""


def test_a_503_that_is_not_the_collectors_keeps_its_own_words() -> None:
    """A proxy's 503 (no endpoints behind a service) is not "no history": it says what it is."""
    says = answer("503 Service Unavailable", "text/plain", b'no endpoints available for "x"\n')
    with FakeServer({HISTORY_PATH: says}) as server:
        outcome = run_bounded(command("history", "--server", server.url), REQUEST_DEADLINE + SLACK)
    assert outcome.code == EXIT_ERROR, outcome
    one_clear_line(outcome, server.url, 'answered 503: no endpoints available for "x"')


def test_dismiss_sends_the_image_encoded_and_reads_a_refusal_as_one_line() -> None:
    image = "registry.example:5000/team/app:1.0"
    refused = answer("403 Forbidden", "application/json", b'{"error": "\\u001b[2Jnope"}')
    quoted = "registry.example%3A5000%2Fteam%2Fapp%3A1.0"
    with FakeServer({f"{UPDATES_PATH}/{quoted}": refused}) as server:
        outcome = run_bounded(
            command("updates", "dismiss", image, "--server", server.url), REQUEST_DEADLINE + SLACK
        )
    assert server.requests == [f"{UPDATES_PATH}/{quoted}"]
    assert outcome.code == EXIT_ERROR, outcome
    line = one_clear_line(outcome, server.url, "refused the credentials (403): \\x1b[2Jnope")
    assert "\x1b" not in line
