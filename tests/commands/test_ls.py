"""``pulltrace ls`` as a user runs it, against a collector that sends hostile strings: whatever
comes back, a table, a JSON listing or an error, nothing reaches the terminal raw."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgspec
import pytest

from pulltrace.model import PullList, PullStatus, encode
from tests.report_sink import serve

ESCAPES = "\x1b]0;owned\x07\x1b[2J\r\x00\x9b31m\u202e"
REF = f"ghcr.io/acme/app{ESCAPES}:v1"
HUGE_REF = "ghcr.io/acme/" + "a" * 900_000 + ":v1"
PULLS = [
    PullStatus(id="a", node_name="n1", image_ref=REF, phase="pulling"),
    PullStatus(id="b", node_name="n2", image_ref=HUGE_REF, phase="failed", error=ESCAPES),
]


class Hostile(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status = 200
        self.nodes_status = 404
        self.pulls = PULLS

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Hostile

    def do_GET(self) -> None:
        if self.path.startswith("/api/v1/pulls") and self.server.status == 200:
            self._send(200, encode(PullList(pulls=self.server.pulls)))
        elif self.path.startswith("/api/v1/pulls"):
            self._send(self.server.status, msgspec.json.encode({"error": f"boom{ESCAPES}"}))
        else:
            error = {"error": f"nodes{ESCAPES}"}
            self._send(self.server.nodes_status, msgspec.json.encode(error))

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Hostile]:
    yield from serve(Hostile())


def ls(collector: Hostile, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pulltrace.cli", "ls", "--server", collector.url, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def raw_controls(text: str) -> list[str]:
    return [c for c in text if not (c.isprintable() or c == "\n")]


@pytest.mark.parametrize("fmt", [[], ["-o", "wide"], ["-o", "json"]])
def test_nothing_raw_reaches_the_terminal(collector: Hostile, fmt: list[str]) -> None:
    out = ls(collector, *fmt)
    assert raw_controls(out.stdout) == [] and raw_controls(out.stderr) == []
    if out.returncode == 0 and fmt != ["-o", "json"]:
        lines = out.stdout.splitlines()
        assert len(lines) == 3 and "app\\x1b]0;owned\\x07" in out.stdout
        assert max(map(len, lines)) < 4096, "a 900 KB reference is cut"
    else:  # a client that refuses such a listing says so in one line
        assert out.returncode == 0 or len(out.stderr.splitlines()) == 1


def test_json_keeps_the_exact_strings(collector: Hostile) -> None:
    out = ls(collector, "-o", "json")
    if out.returncode == 0:
        assert msgspec.json.decode(out.stdout, type=PullList).pulls == PULLS
    else:  # refused whole, never altered
        assert out.stdout == "" and len(out.stderr.splitlines()) == 1


def test_the_collectors_error_is_one_escaped_line(collector: Hostile) -> None:
    collector.status = 500
    out = ls(collector)
    assert out.returncode != 0 and out.stdout == ""
    assert raw_controls(out.stderr) == []
    (line,) = out.stderr.splitlines()
    assert "boom\\x1b]0;owned\\x07\\x1b[2J\\r\\x00\\x9b31m\\u202e" in line


def test_a_warning_quoting_the_collector_is_escaped(collector: Hostile) -> None:
    collector.nodes_status = 500
    # Pulls the wire accepts, with the one free-text field a peer may fill with controls.
    collector.pulls = [
        PullStatus(
            id="c",
            node_name="n1",
            image_ref="ghcr.io/acme/app:v1",
            phase="failed",
            error=f"denied{ESCAPES}",
        )
    ]
    out = ls(collector, "-o", "wide")
    assert out.returncode == 0, out.stderr
    assert raw_controls(out.stdout) == [] and "denied\\x1b]0;owned\\x07" in out.stdout
    assert raw_controls(out.stderr) == []
    assert "warning: cannot read the nodes' health: " in out.stderr
    assert "nodes\\x1b]0;owned\\x07\\x1b[2J\\r\\x00\\x9b31m\\u202e" in out.stderr


@pytest.mark.parametrize("host", ["a..b", "a" * 70 + ".example", "bücher..de"])
def test_a_host_name_the_resolver_refuses_is_one_line(host: str) -> None:
    """An empty or overlong label is no traceback (IDNA raises UnicodeError, not OSError)."""
    cmd = [sys.executable, "-m", "pulltrace.cli", "ls", "--server", f"http://{host}/"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    (line,) = out.stderr.splitlines()
    assert line.startswith(f"pulltrace: cannot reach the collector at http://{host}/"), line
