"""The agent's probes over real sockets: what kubelet is told, and what hostile or broken
requests get (a JSON answer or a closed connection, never a hang or a traceback)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from pulltrace.agent.daemon import Agent, AgentConfig, ContainerdState, frozen
from pulltrace.agent.health import MAX_CONNECTIONS, ProbeServer
from pulltrace.listen import listen_socket
from pulltrace.model import LayerStatus, PullStatus

MISSING = "/nonexistent/containerd.sock"


@pytest.fixture
def agent() -> Iterator[Agent]:
    agent = Agent(AgentConfig("http://127.0.0.1:9", "node-a", (MISSING,), "k8s.io"))
    yield agent
    agent.reporter.close()
    agent.client.close()


@pytest.fixture
def probes(agent: Agent) -> Iterator[str]:
    server = ProbeServer(
        listen_socket(("127.0.0.1", 0), "--health-listen"),
        {"/healthz": agent.liveness, "/readyz": agent.readiness},
    ).start()
    host, port = server.address
    yield f"http://{host}:{port}"
    server.close()


def raw(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def test_ready_only_once_a_poll_reached_containerd(agent: Agent, probes: str) -> None:
    not_yet = httpx.get(f"{probes}/readyz")
    assert not_yet.status_code == 503
    assert not_yet.json() == {"error": f"containerd at {MISSING} not polled yet"}
    agent.poll_once()
    reply = httpx.get(f"{probes}/readyz")
    assert reply.status_code == 503 and reply.headers["content-type"] == "application/json"
    assert reply.json() == {
        "error": f"containerd unreachable at {MISSING}: no such socket (is containerd running?)"
    }
    assert httpx.get(f"{probes}/healthz").json() == {"status": "ok"}


def test_live_while_the_poll_loop_turns(agent: Agent, probes: str) -> None:
    agent.poll_once()
    assert httpx.get(f"{probes}/healthz").status_code == 200
    agent.containerd = ContainerdState(MISSING, time.monotonic() - 11, False, "x")
    reply = httpx.get(f"{probes}/healthz")
    assert reply.status_code == 503
    assert reply.json()["error"].startswith("the poll loop has not finished a poll for 11")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 405),
        (b"DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"POST /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /healthz HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", 431),
        (b"GET /healthz HTTP/9.9\r\n\r\n", 505),
    ],
)
def test_anything_else_is_a_json_error(probes: str, request_bytes: bytes, status: int) -> None:
    head, _, body = raw(probes, request_bytes).partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode(), head
    assert b"content-type: application/json" in head.lower()
    if body:
        assert list(json.loads(body)) == ["error"]


def test_connections_beyond_the_limit_are_closed_unanswered(probes: str) -> None:
    host, port = probes.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(MAX_CONNECTIONS)]
    try:
        with socket.create_connection((host, int(port)), timeout=10) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            assert extra.recv(100) == b""
    finally:
        for sock in idle:
            sock.close()

    # The slots come back as the idle clients go.
    def answered() -> bool:
        try:
            return httpx.get(f"{probes}/healthz", timeout=10).status_code == 200
        except httpx.TransportError:
            return False

    deadline = time.monotonic() + 10
    while not answered():
        assert time.monotonic() < deadline, "the probe server never answered again"


def test_held_pulls_are_frozen_not_moving() -> None:
    layer = LayerStatus(digest="sha256:l", total_bytes=10, downloaded_bytes=4, bytes_per_sec=3.0)
    pulling = PullStatus(
        id="p", node_name="n", bytes_per_sec=3.0, eta_seconds=2.0, layers=[layer], percent=40.0
    )
    done = PullStatus(id="d", node_name="n", phase="completed", bytes_per_sec=5.0)
    held, kept = frozen([pulling, done])
    assert (held.phase, held.percent, held.downloaded_bytes) == ("pulling", 40.0, 0)
    assert held.bytes_per_sec == 0 and held.eta_seconds is None
    assert held.layers[0].bytes_per_sec == 0 and held.layers[0].downloaded_bytes == 4
    assert kept is done  # a finished pull's average speed is history, not motion


def agent_cli(*args: str, **env: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PULLTRACE_")}
    command = ["agent", "--server", "http://127.0.0.1:9", "--containerd", MISSING, *args]
    return subprocess.Popen(
        [sys.executable, "-m", "pulltrace.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**clean, **env},
    )


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--health-listen", "nowhere"], {}, "--health-listen: invalid address 'nowhere'"),
        ([], {"PULLTRACE_AGENT_HEALTH_LISTEN": ":99999"}, "PULLTRACE_AGENT_HEALTH_LISTEN"),
    ],
)
def test_a_bad_health_address_is_one_line(args: list[str], env: dict[str, str], words: str) -> None:
    proc = agent_cli(*args, **env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("pulltrace: ") and words in line


def test_a_health_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = agent_cli("--health-listen", f"127.0.0.1:{port}")
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip() == (
        f"pulltrace: --health-listen: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


@pytest.mark.parametrize("off", ["off", ""])
def test_the_probes_can_be_turned_off(off: str) -> None:
    proc = agent_cli(PULLTRACE_AGENT_HEALTH_LISTEN=off)
    try:
        assert proc.stdout is not None
        starting = json.loads(proc.stdout.readline())
        assert starting["msg"] == "agent starting" and starting["health"] == "off"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert proc.returncode == 0
