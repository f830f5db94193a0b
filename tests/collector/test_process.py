"""``pulltrace collector`` as a real process: JSON logs on stdout, one line for bad input, a
graceful exit on SIGTERM even with an event stream open."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.collector.conftest import body, layer, pull


def hermetic_env(home: Path, **extra: str) -> dict[str, str]:
    """No kubeconfig and no in-cluster account: correlation is off, whatever this machine has."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PULLTRACE_", "KUBERNETES_")) and k != "KUBECONFIG"
    }
    env.update(HOME=str(home), **extra)
    return env


def run(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pulltrace.cli", "collector", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=hermetic_env(home, **env),
    )


def test_help_does_not_import_the_server_stack() -> None:
    code = (
        "import sys\n"
        "from pulltrace.cli import main\n"
        "for argv in (['--help'], ['collector', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = ('starlette', 'uvicorn', 'prometheus_client', 'pulltrace.collector.app')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (
            ["--listen", "nonsense"],
            {},
            "pulltrace: --listen: invalid address 'nonsense' (e.g. :8080 or 127.0.0.1:8080)",
        ),
        (
            [],
            {"PULLTRACE_HISTORY_TTL": "soon"},
            "pulltrace: PULLTRACE_HISTORY_TTL: invalid duration 'soon' (e.g. 1s, 500ms, 2m)",
        ),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], line: str
) -> None:
    out = run(tmp_path, *args, **env)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [line]
    assert out.stdout == ""


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run(tmp_path, "--listen", f"127.0.0.1:{port}", "--metrics-listen", "127.0.0.1:0")
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"pulltrace: --listen: cannot listen on 127.0.0.1:{port}: ")
    assert "Traceback" not in out.stderr


class Process:
    def __init__(self, home: Path) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pulltrace.cli",
                "collector",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=hermetic_env(home),
        )
        self.lines: list[dict[str, Any]] = []

    def wait_for(self, msg: str) -> dict[str, Any]:
        """Reads the JSON log lines on stdout until one says ``msg``."""
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = json.loads(raw)
            self.lines.append(line)
            if line["msg"] == msg:
                return line
        raise AssertionError(f"stdout ended before {msg!r}; stderr: {self.stderr()}")

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read() if self.proc.poll() is not None else ""


@pytest.fixture
def process(tmp_path: Path) -> Iterator[Process]:
    p = Process(tmp_path)
    yield p
    if p.proc.poll() is None:
        p.proc.kill()
        p.proc.wait()


def test_serves_logs_lifecycle_events_and_stops_on_sigterm(process: Process) -> None:
    warning = process.wait_for(
        "Kubernetes correlation off: no in-cluster service account or kubeconfig"
    )
    assert warning["level"] == "warning"
    listening = process.wait_for("collector listening")
    url = f"http://{listening['api']}"
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200  # correlation off: ready at once
        report = body("node-a", [pull("a1", layers=[layer(0, done=100)])])
        assert client.post("/api/v1/report", content=report).status_code == 204
        started = process.wait_for("pull.started")
        report = body("node-a", [pull("a1", layers=[layer(0, done=1000)])], at=1)
        assert client.post("/api/v1/report", content=report).status_code == 204
        completed = process.wait_for("pull.completed")
        with client.stream("GET", "/api/v1/events") as stream:
            assert stream.status_code == 200
            process.proc.send_signal(signal.SIGTERM)
            assert list(stream.iter_lines())  # the snapshot, then the end of the stream
    process.wait_for("collector stopped")
    assert process.proc.wait(timeout=30) == 0
    for line in (started, completed):
        assert {"schemaVersion", "timestamp", "type", "nodeName", "pull", "layer"} <= set(line)
        assert line["schemaVersion"] == "v1" and line["type"] == line["msg"]
        assert line["pull"]["id"] == "a1" and line["nodeName"] == "node-a"
    assert not any(line["msg"] == "pull.progress" for line in process.lines)
    assert "Traceback" not in process.stderr()


@pytest.mark.k8s
def test_kubelets_pulls_are_kept_as_long_as_history_ttl_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--history-ttl`` applies to the pulls kubelet's events tell of, not only the agents'."""
    from pulltrace.collector.server import _connect
    from testkit.kube.apiserver import ApiServer

    with ApiServer() as api:
        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "kubeconfig")))
        correlator = _connect([], 60.0)
        assert correlator is not None
        try:
            assert correlator._index._ttl == 60.0  # type: ignore[attr-defined]
        finally:
            correlator.close()
