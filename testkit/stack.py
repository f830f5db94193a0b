"""The shipped ``pulltrace collector`` and ``pulltrace agent`` as processes, and a recorder of
the collector's event stream, for end-to-end tests.

Both commands run the way a user runs them (``python -m pulltrace.cli``), each in a process
group of its own, so a test goes through flag parsing, configuration discovery, logging and
signal handling too, and teardown kills whatever a process spawned. Their log lines are kept,
because when an end-to-end test fails the answer is usually in a log that is gone afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
from httpx_sse import connect_sse
from prometheus_client.parser import text_string_to_metric_families

from pulltrace.model import NodeStatus, PullEvent, PullList
from testkit.util import DEADLINE_SCALE, terminate_group, wait_for

START_TIMEOUT = 30.0
"""An upper bound for a Python process to start and, for the collector, list the cluster."""
PULLTRACE = (sys.executable, "-m", "pulltrace.cli")
# The tokens every end-to-end stack uses, unless a test is about the tokens themselves.
AGENT_TOKEN = "agent-secret"
READ_TOKEN = "read-secret"
"""The command under test: this checkout's. tests/images passes an image's venv instead."""


def hermetic_env(home: Path, **extra: str) -> dict[str, str]:
    """Nothing from the developer's shell or a CI pod (kubeconfig, in-cluster account, pulltrace
    settings) may leak into the processes under test."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PULLTRACE_", "KUBERNETES_")) and k != "KUBECONFIG"
    }
    env.update(HOME=str(home), PULLTRACE_LOG_LEVEL="info", **extra)
    return env


class LoggedProcess:
    """A ``pulltrace`` subcommand whose output is read continuously: a pipe nobody drains
    would block the process once it fills, and the lines explain failures."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: Mapping[str, str],
        command: Sequence[str] = PULLTRACE,
    ) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [*command, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=dict(env),
            start_new_session=True,
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self._lines.append(line.rstrip("\n"))

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def records(self) -> list[dict[str, Any]]:
        """The JSON log lines; anything else (a traceback) is only in ``lines``."""
        out: list[dict[str, Any]] = []
        for line in self.lines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def tail(self, n: int = 60) -> str:
        return f"--- {self.name} output (tail) ---\n" + "\n".join(self.lines()[-n:])

    def check_alive(self) -> None:
        """Lets a wait fail at once, with the reason, instead of timing out later."""
        code = self.proc.poll()
        if code is not None:
            self._reader.join(5)
            raise RuntimeError(f"{self.name} exited with status {code}\n{self.tail()}")

    def wait_log(self, msg: str, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        def logged() -> dict[str, Any] | None:
            found = next((r for r in self.records() if r.get("msg") == msg), None)
            if found is None:
                self.check_alive()
            return found

        record = wait_for(logged, timeout, f"{self.name} to log {msg!r}")
        assert record is not None
        return record

    def stop(self) -> int:
        """SIGTERM, as Kubernetes stops a pod; the exit status says whether that was clean."""
        terminate_group(self.proc)
        self._reader.join(5)
        return self.proc.returncode


@dataclass
class Collector:
    process: LoggedProcess
    url: str
    metrics_url: str
    read_token: str

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.read_token}"},
            timeout=10.0,
        )

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample from ``/metrics`` (which takes no token), or None when absent."""
        text = httpx.get(self.metrics_url, timeout=10.0).raise_for_status().text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    return float(sample.value)
        return None

    def stop(self) -> int:
        return self.process.stop()


def start_collector(
    kubeconfig: Path,
    home: Path,
    *,
    agent_token: str = AGENT_TOKEN,
    read_token: str = READ_TOKEN,
    command: Sequence[str] = PULLTRACE,
    listen: str = "127.0.0.1:0",
    extra_args: Sequence[str] = (),
) -> Collector:
    """Listens on ports the kernel picks (read back from the "collector listening" line, so
    there is no window in which another process can take them), unless ``listen`` names one a
    restarted collector must keep; returns once ``/readyz`` says the Kubernetes watches have
    listed everything. ``extra_args`` are more flags, e.g. a short ``--history-ttl`` for a
    soak that must reach a steady state within minutes."""
    env = hermetic_env(
        home,
        KUBECONFIG=str(kubeconfig),
        PULLTRACE_AGENT_TOKEN=agent_token,
        PULLTRACE_READ_TOKEN=read_token,
    )
    args = ["collector", "--listen", listen, "--metrics-listen", "127.0.0.1:0", *extra_args]
    process = LoggedProcess("collector", args, env, command)
    try:
        listening = process.wait_log("collector listening")
        collector = Collector(
            process,
            f"http://{listening['api']}",
            f"http://{listening['metrics']}/metrics",
            read_token,
        )

        def ready() -> bool:
            process.check_alive()
            return httpx.get(f"{collector.url}/readyz", timeout=5.0).status_code == 200

        wait_for(ready, START_TIMEOUT, "collector /readyz 200", ignore=(httpx.TransportError,))
    except BaseException:
        process.stop()
        raise
    return collector


def start_agent(
    server: str,
    node: str,
    containerd: str,
    *,
    home: Path,
    token: str = AGENT_TOKEN,
    interval: str = "250ms",
    command: Sequence[str] = PULLTRACE,
) -> LoggedProcess:
    """Its probes on a port the kernel picks: ``health_url`` reads it back from its log."""
    args = ["agent", "--server", server, "--node", node, "--containerd", containerd]
    args += ["--interval", interval, "--health-listen", "127.0.0.1:0"]
    env = hermetic_env(home, PULLTRACE_AGENT_TOKEN=token)
    return LoggedProcess("agent", args, env, command)


def health_url(agent: LoggedProcess) -> str:
    return f"http://{agent.wait_log('agent starting')['health']}"


class EventRecorder:
    """Reads ``/api/v1/events`` in a thread and keeps every pull event, and every node event,
    in arrival order, so a test can wait for one and afterwards check the whole sequence."""

    def __init__(self, url: str, token: str) -> None:
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"}
        self._cond = threading.Condition()
        self._events: list[PullEvent] = []
        self._nodes: list[NodeStatus] = []
        self.snapshot: PullList | None = None
        self.status = 0
        self.ended = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sse", daemon=True)

    def start(self) -> EventRecorder:
        """Returns once the snapshot is in: every event after it will be recorded."""
        self._thread.start()
        self.wait_until(lambda: self.snapshot is not None, "the stream's snapshot")
        return self

    def _run(self) -> None:
        # Reads end only when the collector stops (it closes every stream on SIGTERM); the read
        # timeout, well above the 15 s heartbeat, only guards against a hung collector.
        timeout = httpx.Timeout(10.0, read=60.0)
        try:
            with (
                httpx.Client(timeout=timeout) as client,
                connect_sse(client, "GET", self._url, headers=dict(self._headers)) as source,
            ):
                with self._cond:
                    self.status = source.response.status_code
                if self.status != 200:
                    raise RuntimeError(f"GET {self._url}: HTTP {self.status}")
                for sse in source.iter_sse():
                    self._receive(sse.event, sse.data)
        except BaseException as exc:
            with self._cond:
                self.error = exc
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def _receive(self, kind: str, data: str) -> None:
        if kind == "message" and not data:
            return  # httpx-sse's reading of a heartbeat comment once an id has been seen
        with self._cond:
            if kind == "snapshot":
                self.snapshot = msgspec.json.decode(data, type=PullList)
            elif kind.startswith("node."):
                self._nodes.append(msgspec.json.decode(data, type=NodeStatus))
            else:
                self._events.append(msgspec.json.decode(data, type=PullEvent))
            self._cond.notify_all()

    def events(self) -> list[PullEvent]:
        with self._cond:
            return list(self._events)

    def wait_until(self, check: Callable[[], object], what: str, timeout: float = 30.0) -> None:
        """Re-checks on every message instead of polling; a stream that ended fails at once."""
        timeout *= DEADLINE_SCALE
        deadline = time.monotonic() + timeout
        with self._cond:
            while not check():
                left = deadline - time.monotonic()
                if self.ended:
                    raise AssertionError(f"the event stream ended before {what}: {self.error!r}")
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
                self._cond.wait(left)

    def wait_event(
        self, check: Callable[[PullEvent], bool], what: str, timeout: float = 30.0
    ) -> PullEvent:
        found: list[PullEvent] = []

        def seen() -> bool:
            found[:] = [e for e in self._events if check(e)][:1]
            return bool(found)

        self.wait_until(seen, what, timeout)
        return found[0]

    def node_mark(self) -> int:
        """Where the node events are now: ``wait_node`` looks only after it."""
        with self._cond:
            return len(self._nodes)

    def wait_node(
        self, node: str, state: str, what: str, since: int = 0, timeout: float = 30.0
    ) -> NodeStatus:
        """The first node event after ``since`` that puts ``node`` in ``state``."""
        found: list[NodeStatus] = []

        def seen() -> bool:
            later = self._nodes[since:]
            found[:] = [n for n in later if n.node_name == node and n.state == state][:1]
            return bool(found)

        self.wait_until(seen, what, timeout)
        return found[0]

    def close(self, timeout: float = 10.0) -> None:
        """After the collector has stopped, which is what ends the stream."""
        self._thread.join(timeout)
