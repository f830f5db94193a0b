"""``pulltrace agent``: the DaemonSet role. Polls the node's containerd, reports to the collector.

Polling never waits on the collector: while it is down the agent keeps polling, so lifecycle
transitions stay accurate, and sends only the latest full report once it is back, since each
report supersedes the one before.

While containerd cannot be read the agent keeps reporting, saying so (``containerdReachable:
false`` and why), with the pulls it holds frozen as they were: a heartbeat alone would tell
the collector that the node is fine. ``/readyz`` says the same to kubelet, and ``/healthz``
whether the poll loop itself is still turning.
"""

from __future__ import annotations

import http.client
import logging
import random
import signal
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

import msgspec

from pulltrace import __version__
from pulltrace.agent.containerd import ContainerdError, FollowingClient
from pulltrace.agent.health import ProbeServer
from pulltrace.agent.sockets import unreachable
from pulltrace.agent.tracker import Tracker
from pulltrace.errors import UsageError
from pulltrace.listen import Address, format_address, listen_socket
from pulltrace.model import (
    ACTIVE_PHASES,
    INTERVAL_MAX,
    INTERVAL_MIN,
    REASON_MAX,
    AgentReport,
    NodeName,
    PullStatus,
    encode,
)
from pulltrace.render import printable

log = logging.getLogger("pulltrace.agent.daemon")

MAX_BACKOFF = 30.0


LIVENESS_MIN = 10.0
"""Seconds: ``/healthz`` fails once no poll has finished for this long, or five intervals."""


AUTH_REFUSED = (401, 403)


def agent_token(raw: str) -> str:
    """The token with the whitespace around it removed, as ``kubectl create secret
    --from-file`` often leaves a newline at its end. Raises UsageError for one with any other
    character outside printable ASCII: it could not be sent in a header, and the collector
    would never accept it."""
    token = raw.strip()
    for position, char in enumerate(token, 1):
        if not "!" <= char <= "~":
            raise UsageError(
                f"PULLTRACE_AGENT_TOKEN: character {position} of the token is {char!r}; "
                "a bearer token is printable ASCII without spaces"
            )
    return token


@dataclass(frozen=True)
class AgentConfig:
    server: str
    node_name: str
    containerd: tuple[str, ...]
    """Candidate sockets, in order (``pulltrace.agent.sockets.candidates``)."""
    namespace: str
    interval: float = 1.0
    token: str = ""
    stall_timeout: float = 90.0
    health_listen: Address | None = None

    def __post_init__(self) -> None:
        """What the collector would refuse in every report is refused here, once, at start:
        an agent that runs but never gets a report in is worse than one that says why."""
        object.__setattr__(self, "token", agent_token(self.token))
        if not INTERVAL_MIN <= self.interval <= INTERVAL_MAX:
            raise UsageError(
                f"--interval: {self.interval:g}s is outside {INTERVAL_MIN:g}s to {INTERVAL_MAX:g}s"
            )
        try:
            msgspec.convert(self.node_name, NodeName)
        except msgspec.ValidationError:
            raise UsageError(
                f"--node: {printable(self.node_name, 80)} is not a Kubernetes node name "
                "(letters, digits, '-' and '.', at most 253 characters)"
            ) from None

    @property
    def report_url(self) -> str:
        return self.server.rstrip("/") + "/api/v1/report"


@dataclass(frozen=True, slots=True)
class ContainerdState:
    """The last poll's outcome, replaced whole so that the probe threads read it without a
    lock."""

    socket: str
    polled_at: float
    """``time.monotonic()`` when the last poll ended (the agent's start before the first)."""
    reachable: bool | None = None
    """None before the first poll."""
    reason: str = ""

    @property
    def problem(self) -> str:
        """Why the node is not ready; empty when it is."""
        if self.reachable is None:
            return f"containerd at {self.socket} not polled yet"
        return "" if self.reachable else unreachable(self.socket, self.reason)


class Reporter:
    """Sends reports on change, a heartbeat when idle, and backs off while the collector fails."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"pulltrace/{__version__}",
            # So that the collector can show which node it turns away, without the body.
            "Pulltrace-Node": config.node_name,
        }
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        self._headers = headers
        self._http = _Connection(config.report_url)
        self._last_body: tuple[bytes, str, bool, str] | None = None
        self._last_sent = -1e18
        self._backoff = 0.0
        self._retry_at = -1e18
        self.sent = 0
        self.failures = 0
        self.refusal = ""
        """Why the collector refuses the agent's token; empty while it accepts it."""

    @property
    def heartbeat(self) -> float:
        """Under the collector's staleness limit of three intervals."""
        return 2 * self.config.interval

    def offer(self, pulls: list[PullStatus], now: float, containerd: ContainerdState) -> bool:
        reachable = containerd.reachable is not False
        body = (encode_pulls(pulls), containerd.socket, reachable, containerd.reason)
        changed = body != self._last_body
        if now < self._retry_at or not (changed or now - self._last_sent >= self.heartbeat):
            return False
        report = AgentReport(
            node_name=self.config.node_name,
            timestamp=datetime.now(UTC),
            pulls=pulls,
            agent_version=__version__,
            interval_seconds=self.config.interval,
            containerd_reachable=reachable,
            containerd_socket=containerd.socket,
            containerd_error="" if reachable else containerd.reason[:REASON_MAX],
        )
        if self._post(encode(report), now):
            self._last_body = body
            self._last_sent = now
            return True
        return False

    def _post(self, payload: bytes, now: float) -> bool:
        try:
            reply = self._http.post(payload, self._headers)
        except (OSError, http.client.HTTPException) as err:
            return self._failed(now, f"collector unreachable: {err or type(err).__name__}")
        if reply.status_code in AUTH_REFUSED:
            return self._refused(now, reply)
        if reply.status_code >= 300:
            return self._failed(now, f"collector answered {reply.status_code}: {reply.text[:200]}")
        if self.refusal:
            log.info("collector accepts the agent's token again")
            self.refusal = ""
        elif self.failures:
            log.info("collector reachable again", extra={"server": self.config.server})
        self._backoff = 0.0
        self.failures = 0
        self.sent += 1
        return True

    def _refused(self, now: float, reply: _Reply) -> bool:
        """Said once, at warning, and again only when the answer changes: the agent keeps
        trying, at the longest back-off, until a new token is mounted and it restarts or the
        collector's changes, and a line every 30 s would say nothing new."""
        detail = reply.text[:200].strip()
        refusal = f"collector refused the agent's token ({reply.status_code})"
        refusal += f": {detail}" if detail else ""
        if refusal != self.refusal:
            self.refusal = refusal
            log.warning(refusal, extra={"server": self.config.server})
        return self._failed(now, refusal, quiet=True)

    def _failed(self, now: float, reason: str, *, quiet: bool = False) -> bool:
        self.failures += 1
        self._backoff = min(MAX_BACKOFF, max(self.config.interval, self._backoff * 2))
        self._retry_at = now + self._backoff * random.uniform(0.8, 1.2)
        if not quiet:
            extra = {"retryIn": round(self._backoff, 1), "failures": self.failures}
            log.warning(reason, extra=extra)
        return False

    def close(self) -> None:
        self._http.close()


def encode_pulls(pulls: list[PullStatus]) -> bytes:
    return b"[" + b",".join(encode(p) for p in pulls) + b"]"


class _Connection:
    """One keep-alive HTTP/1.1 connection to the collector, reopened after any error.

    The standard library rather than httpx, for a measured reason: the agent runs on every
    node, and ``bench/agent_overhead.py`` (10 s, 32 live ingests) put its peak RSS at 51.9 MiB
    with one keep-alive ``httpx.Client`` (the package pulls in more, Rich and Click among it,
    when they are installed, as they are beside Textual) against 43.9 MiB with this class,
    under a 45 MiB target. One POST on one connection needs none of what httpx adds.
    """

    TIMEOUT = 5.0

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"collector URL must be http:// or https://, not {url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        self.path = parts.path or "/"
        self._conn: http.client.HTTPConnection | None = None

    def _open(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.TIMEOUT, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.TIMEOUT)

    def post(self, body: bytes, headers: dict[str, str]) -> _Reply:
        conn = self._conn or self._open()
        self._conn = None
        try:
            conn.request("POST", self.path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._conn = conn
        return _Reply(response.status, text)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass(frozen=True)
class _Reply:
    status_code: int
    text: str


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.client = FollowingClient(config.containerd, config.namespace)
        self.tracker = Tracker(self.client, config.node_name, stall_timeout=config.stall_timeout)
        self.reporter = Reporter(config)
        self.stop = threading.Event()
        self.containerd = ContainerdState(self.client.path, time.monotonic())
        self._phases: dict[str, str] = {}

    def poll_once(self) -> list[PullStatus]:
        try:
            pulls = self.tracker.poll()
        except ContainerdError as err:
            return self._unreachable(err)
        if self.containerd.reachable is not True:
            log.info("polling containerd", extra={"containerd": self.client.path})
        self.containerd = ContainerdState(self.client.path, time.monotonic(), True)
        self._log_transitions(pulls)
        return pulls

    def _unreachable(self, err: ContainerdError) -> list[PullStatus]:
        """Says why once, then looks again for the socket to use: containerd may have come up
        at another candidate, or recreated its own."""
        path, reason = self.client.path, self.client.diagnose(err)
        if self.containerd.reachable is not False:
            log.warning(unreachable(path, reason), extra={"containerd": path})
        self.containerd = ContainerdState(path, time.monotonic(), False, reason)
        if self.client.reconnect():
            log.info("reconnecting to containerd", extra={"containerd": self.client.path})
        return frozen(self.tracker.statuses())

    def liveness(self) -> tuple[int, dict[str, str]]:
        limit = max(LIVENESS_MIN, 5 * self.config.interval)
        idle = time.monotonic() - self.containerd.polled_at
        if idle > limit:
            return 503, {"error": f"the poll loop has not finished a poll for {idle:.0f}s"}
        return 200, {"status": "ok"}

    def readiness(self) -> tuple[int, dict[str, str]]:
        problem = self.containerd.problem
        if problem:
            return 503, {"error": problem}
        return 200, {"status": "ready", "containerd": self.containerd.socket}

    def _log_transitions(self, pulls: list[PullStatus]) -> None:
        seen: dict[str, str] = {}
        for pull in pulls:
            seen[pull.id] = pull.phase
            if self._phases.get(pull.id) != pull.phase:
                log.info(
                    f"pull {pull.phase}",
                    extra={
                        "pullId": pull.id,
                        "imageRef": pull.image_ref,
                        "phase": pull.phase,
                        "totalBytes": pull.total_bytes,
                        "error": pull.error,
                    },
                )
        self._phases = seen

    def run(self, probes: ProbeServer | None = None) -> None:
        log.info(
            "agent starting",
            extra={
                "version": __version__,
                "node": self.config.node_name,
                "server": self.config.server,
                "interval": self.config.interval,
                "containerd": list(self.config.containerd),
                "health": format_address(probes.address) if probes else "off",
            },
        )
        next_tick = time.monotonic()
        try:
            while not self.stop.is_set():
                pulls = self.poll_once()
                self.reporter.offer(pulls, time.monotonic(), self.containerd)
                next_tick += self.config.interval
                delay = next_tick - time.monotonic()
                if delay < 0:
                    next_tick = time.monotonic()
                    delay = 0
                self.stop.wait(delay)
        finally:
            if probes is not None:
                probes.close()
            self.reporter.close()
            self.client.close()
            log.info("agent stopped")


def frozen(pulls: list[PullStatus]) -> list[PullStatus]:
    """Pulls as they were when containerd was last read: their phases stand, but nothing is
    known to be moving."""
    replace = msgspec.structs.replace
    return [
        replace(
            p,
            bytes_per_sec=0.0,
            eta_seconds=None,
            layers=[replace(layer, bytes_per_sec=0.0) for layer in p.layers],
        )
        if p.phase in ACTIVE_PHASES
        else p
        for p in pulls
    ]


def run(config: AgentConfig) -> int:
    """Raises ConfigError when the health address cannot be bound."""
    address = config.health_listen
    sock = listen_socket(address, "--health-listen") if address is not None else None
    agent = Agent(config)
    probes = None
    if sock is not None:
        probes = ProbeServer(sock, {"/healthz": agent.liveness, "/readyz": agent.readiness})
        probes.start()

    def _stop(signum: int, frame: FrameType | None) -> None:
        agent.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    agent.run(probes)
    return 0
