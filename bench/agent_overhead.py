"""What the agent's 1 Hz poll loop costs a node while many downloads are in flight.

A DaemonSet runs on every node, so its CPU and memory are paid once per node, and they matter
most exactly when the node is busy pulling. This benchmark pulls several images of many small
layers through a slow throttle, so at least ``--ingests`` layer downloads stay live for the whole
window, and measures the real ``pulltrace agent`` process (reporting to a loopback sink) beside
the obvious peer: ``ctr content active`` run at the same rate. Both run during the same window,
against the same containerd and the same ingests.

Run from the repository root, as root, with containerd, ctr and docker-registry installed::

    python -m bench.agent_overhead [--duration 60] [--ingests 50]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import psutil

from pulltrace.agent.containerd import ContainerdError, ContentClient
from pulltrace.agent.tracker import Tracker
from testkit.containerd import Containerd
from testkit.containerd import ContainerdError as DaemonError
from testkit.cri import BackgroundPull, start_cri_pull
from testkit.images import ImagePusher
from testkit.proxy import ThrottleProxy
from testkit.registry import Registry, RegistryError
from testkit.util import CTR, Managed, MiB, terminate_group, wait_for

NAMESPACE = "k8s.io"
INTERVAL = 1.0  # the agent's default, and the rate the ctr peer runs at
LAYERS_PER_IMAGE = 16  # also containerd's max_concurrent_downloads, so every layer is live at once
SPARE_LAYERS = 1.25  # pull more layers than --ingests, in case a few finish or start late
# containerd 1.6 copies a download into its ingest 1 MiB at a time, so an ingest's offset (and
# its updated_at) moves in 1 MiB steps. At this speed each layer steps every 16 s, well inside
# the agent's 90 s stall timeout, and 50 layers step about three times a second between them,
# so the agent sees progress, and reports it, on most polls.
LAYER_RATE = 64 * 1024
STARTUP = 10.0  # seconds the pulls usually take to get every layer download going
STARTUP_TIMEOUT = 60.0
PULL_TIMEOUT = 3600.0  # never reached: the pulls are cut off when the run stops containerd
FIRST_STEP = MiB / LAYER_RATE  # until the first offsets move: no progress to report before it
WARMUP = 5.0  # seconds after that, so the agent's start-up is not in the window
TIMING_SAMPLES = 40
TIMING_GAP = 0.1
TIMING_ROUND = TIMING_GAP + 0.1  # with one poll and one ctr run
# Layers are sized to outlast the run by this factor: the throttle is one token bucket shared
# by all connections, so some layers get ahead of the average.
LIFETIME_MARGIN = 1.5
RSS_SAMPLE = 0.2
TARGET_CORE_PERCENT = 1.0
TARGET_RSS_MIB = 45.0


class BenchError(Exception):
    """The setup, not the agent, went wrong: the figures would mean nothing."""


@dataclass(frozen=True)
class Plan:
    """Sizes the load so that the ingests outlive the whole run, however long it is asked to be."""

    duration: float
    ingests: int
    images: int
    layer_size: int

    @classmethod
    def for_args(cls, duration: float, ingests: int) -> Plan:
        images = math.ceil(ingests * SPARE_LAYERS / LAYERS_PER_IMAGE)
        run = STARTUP + FIRST_STEP + WARMUP + duration + TIMING_SAMPLES * TIMING_ROUND
        layer_size = math.ceil(LAYER_RATE * LIFETIME_MARGIN * run / MiB) * MiB
        return cls(duration, ingests, images, layer_size)

    @property
    def layers(self) -> int:
        return self.images * LAYERS_PER_IMAGE

    @property
    def rate(self) -> float:
        return self.layers * LAYER_RATE


@dataclass(frozen=True)
class CtrRun:
    wall: float
    cpu: float
    peak_rss: int


@dataclass(frozen=True)
class CtrPeer:
    runs: list[CtrRun]
    elapsed: float

    @property
    def cpu(self) -> float:
        return sum(run.cpu for run in self.runs)

    @property
    def peak_rss(self) -> int:
        return max(run.peak_rss for run in self.runs)


@dataclass(frozen=True)
class PollTimes:
    cold: float
    polls: list[float]
    ctr: list[float]


@dataclass(frozen=True)
class Window:
    elapsed: float
    cpu: float
    peak_rss: int
    max_rss_in_window: int
    live: list[int]
    reports: int
    report_bytes: int


def ctr_active(address: str) -> CtrRun:
    """One ``ctr content active``, reaped with wait4 so its CPU and peak RSS are exact."""
    argv = [CTR, "--address", address, "--namespace", NAMESPACE, "content", "active"]
    to_null = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
    began = time.perf_counter()
    pid = os.posix_spawn(CTR, argv, os.environ, file_actions=to_null)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise BenchError(f"ctr content active exited with {os.waitstatus_to_exitcode(status)}")
    return CtrRun(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)


def ctr_peer(address: str, duration: float) -> CtrPeer:
    """The peer an agent built on shelling out to ctr would be; runs in a worker process."""
    runs: list[CtrRun] = []
    began = tick = time.monotonic()
    while tick < began + duration:
        runs.append(ctr_active(address))
        tick += INTERVAL
        time.sleep(max(0.0, tick - time.monotonic()))
    return CtrPeer(runs, time.monotonic() - began)


def _timed(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def time_polls(address: str) -> PollTimes:
    """Runs in a worker process, away from the throttling proxy's thread and its GIL.

    Polls and ctr invocations alternate, so both see the same ingests.
    """
    with ContentClient(address, NAMESPACE) as client:
        tracker = Tracker(client, "bench")
        cold = _timed(tracker.poll)
        polls: list[float] = []
        ctr: list[float] = []
        for _ in range(TIMING_SAMPLES):
            time.sleep(TIMING_GAP)
            polls.append(_timed(tracker.poll))
            ctr.append(ctr_active(address).wall)
    return PollTimes(cold, polls, ctr)


class ReportSink(ThreadingHTTPServer):
    """Stands in for the collector, so encoding and POSTing reports count in the agent's cost."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.reports = 0
        self.bytes = 0
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, name="sink", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ReportSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        sink = self.server
        assert isinstance(sink, ReportSink)
        with sink.lock:
            sink.reports += 1
            sink.bytes += len(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Silent: one line per report would drown the results."""


class AgentProcess(Managed):
    """The real ``pulltrace agent`` command, so imports, threads and logging are all counted."""

    def __init__(self, address: str, server: str, log: IO[bytes]) -> None:
        command = Path(sys.executable).with_name("pulltrace")
        if not command.exists():
            raise BenchError(f"{command} not found: pip install -e . in this environment")
        argv = [str(command), "agent", "--server", server, "--containerd", address]
        argv += ["--containerd-namespace", NAMESPACE, "--node", "bench"]
        argv += ["--interval", f"{INTERVAL}s"]
        argv += ["--health-listen", "127.0.0.1:0"]  # served as deployed, on a free port
        self.log = log
        self.proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.ps = psutil.Process(self.proc.pid)

    def check(self) -> None:
        code = self.proc.poll()
        if code is not None:
            self.log.flush()
            self.log.seek(0)
            last = (self.log.read().decode(errors="replace").strip().splitlines() or [""])[-1]
            raise BenchError(f"pulltrace agent exited with {code}: {last}")

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def peak_rss(self) -> int:
        """VmHWM: the lifetime peak, which is what a container memory limit has to cover."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise BenchError(f"no VmHWM in /proc/{self.proc.pid}/status")

    def close(self) -> None:
        terminate_group(self.proc)


def live_layers(client: ContentClient) -> int:
    return sum(1 for ingest in client.list_statuses() if ingest.ref.startswith("layer-"))


def moving(client: ContentClient) -> bool:
    return any(ingest.offset > 0 for ingest in client.list_statuses())


def wait_until(
    ok: Callable[[], bool],
    timeout: float,
    what: str,
    agent: AgentProcess,
    pulls: list[BackgroundPull[str]],
) -> None:
    """Fails at once, with the reason, when the agent or a pull dies while we wait."""

    def ready() -> bool:
        agent.check()
        for pull in pulls:
            if pull.error is not None:
                raise BenchError(f"{pull.thread.name} failed: {pull.error}")
        return ok()

    wait_for(ready, timeout, what, interval=0.5)


def measure(
    agent: AgentProcess, client: ContentClient, sink: ReportSink, duration: float
) -> Window:
    began = time.monotonic()
    cpu = agent.cpu()
    reports, report_bytes = sink.reports, sink.bytes
    live = [live_layers(client)]
    max_rss = agent.rss()
    next_count = began + INTERVAL
    while (now := time.monotonic()) < began + duration:
        agent.check()
        max_rss = max(max_rss, agent.rss())
        if now >= next_count:
            live.append(live_layers(client))
            next_count += INTERVAL
        time.sleep(RSS_SAMPLE)
    cpu = agent.cpu() - cpu
    elapsed = time.monotonic() - began
    live.append(live_layers(client))
    return Window(
        elapsed=elapsed,
        cpu=cpu,
        peak_rss=agent.peak_rss(),
        max_rss_in_window=max_rss,
        live=live,
        reports=sink.reports - reports,
        report_bytes=sink.bytes - report_bytes,
    )


@dataclass(frozen=True)
class Results:
    plan: Plan
    window: Window
    peer: CtrPeer
    timing: PollTimes
    live_after_timing: int


def run(plan: Plan) -> Results:
    with contextlib.ExitStack() as stack:
        # close() registered before start(), so a daemon that fails to start leaves no temp dir
        registry = Registry()
        stack.callback(registry.close)
        registry.start()
        pusher = stack.enter_context(ImagePusher(registry.url))
        images = [pusher.image(LAYERS_PER_IMAGE, plan.layer_size) for _ in range(plan.images)]
        proxy = stack.enter_context(ThrottleProxy(registry.host_port, rate=plan.rate))
        containerd = Containerd(max_concurrent_downloads=LAYERS_PER_IMAGE)
        stack.callback(containerd.close)
        containerd.add_registry_host(proxy.host_port)
        containerd.start()
        pool = stack.enter_context(
            ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        )
        # Spawned now, so the peer starts with the window rather than a second into it.
        pool.submit(os.getpid).result()
        sink = stack.enter_context(ReportSink())
        client = stack.enter_context(ContentClient(containerd.address, NAMESPACE))
        log = stack.enter_context(tempfile.TemporaryFile())
        agent = stack.enter_context(AgentProcess(containerd.address, sink.url, log))
        pulls = [
            start_cri_pull(containerd.address, image.ref_at(proxy.host_port), PULL_TIMEOUT)
            for image in images
        ]
        watch = (agent, pulls)
        enough = f"{plan.ingests} live layer ingests"
        wait_until(lambda: live_layers(client) >= plan.ingests, STARTUP_TIMEOUT, enough, *watch)
        wait_until(lambda: moving(client), 2 * FIRST_STEP, "ingest progress", *watch)
        wait_until(lambda: sink.reports > 0, 30, "the agent's first report", *watch)
        time.sleep(WARMUP)
        agent.check()
        peer = pool.submit(ctr_peer, containerd.address, plan.duration)
        window = measure(agent, client, sink, plan.duration)
        ctr = peer.result(timeout=plan.duration + 60)
        timing = pool.submit(time_polls, containerd.address).result(timeout=120)
        return Results(plan, window, ctr, timing, live_layers(client))


def _mib(n: int) -> float:
    return n / MiB


def _ms(seconds: list[float]) -> tuple[float, float]:
    return 1000 * statistics.median(seconds), 1000 * statistics.quantiles(seconds, n=20)[18]


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "-"


def report(results: Results) -> None:
    plan, window, peer, timing = results.plan, results.window, results.peer, results.timing
    agent_core = 100 * window.cpu / window.elapsed
    ctr_core = 100 * peer.cpu / peer.elapsed
    poll_median, poll_p95 = _ms(timing.polls)
    ctr_median, ctr_p95 = _ms(timing.ctr)
    live = window.live
    print(
        f"pulltrace agent overhead: {window.elapsed:.0f} s at {1 / INTERVAL:g} Hz; "
        f"{plan.images} images x {LAYERS_PER_IMAGE} layers of {_mib(plan.layer_size):g} MiB, "
        f"CRI pulls throttled to {plan.rate / 1024:.0f} KiB/s in all"
    )
    print(
        f"live layer ingests: start {live[0]}, end {live[-1]}, min {min(live)} "
        f"(each second; {results.live_after_timing} after the poll timing)"
    )
    mean_report = window.report_bytes / window.reports / 1024 if window.reports else 0.0
    print(f"reports received by the sink: {window.reports} (mean {mean_report:.1f} KiB)")
    print(f"ctr content active invocations: {len(peer.runs)}")
    print()
    rows = [
        (f"CPU seconds in {window.elapsed:.0f} s", window.cpu, peer.cpu, "{:.2f}"),
        ("% of one core", agent_core, ctr_core, "{:.2f}%"),
        ("peak RSS MiB", _mib(window.peak_rss), _mib(peer.peak_rss), "{:.1f}"),
        ("one poll ms, median", poll_median, ctr_median, "{:.1f}"),
        ("one poll ms, p95", poll_p95, ctr_p95, "{:.1f}"),
    ]
    print(f"{'':24}{'pulltrace agent':>17}{'ctr content active':>21}{'agent/ctr':>11}")
    for label, agent_value, ctr_value, fmt in rows:
        print(
            f"{label:24}{fmt.format(agent_value):>17}{fmt.format(ctr_value):>21}"
            f"{_ratio(agent_value, ctr_value):>11}"
        )
    print()
    print(
        f"agent: max RSS in the window {_mib(window.max_rss_in_window):.1f} MiB; "
        f"first (cold) poll {1000 * timing.cold:.1f} ms; "
        f"poll ms over {len(timing.polls)} polls, ctr ms over {len(timing.ctr)} runs"
    )
    rss = _mib(window.peak_rss)
    cpu_ok = agent_core <= TARGET_CORE_PERCENT
    rss_ok = rss <= TARGET_RSS_MIB
    print(
        f"{'PASS' if cpu_ok else 'FAIL'}  agent CPU {agent_core:.2f}% of one core "
        f"(target <= {TARGET_CORE_PERCENT:g}%)"
    )
    print(
        f"{'PASS' if rss_ok else 'FAIL'}  agent peak RSS {rss:.1f} MiB "
        f"(target <= {TARGET_RSS_MIB:g} MiB)"
    )


INFRA_ERRORS = (
    BenchError,
    BrokenProcessPool,
    ContainerdError,
    DaemonError,
    RegistryError,
    TimeoutError,
    OSError,
    subprocess.SubprocessError,
    psutil.Error,
    httpx.HTTPError,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument(
        "--ingests", type=int, default=50, help="live layer downloads to hold (default 50)"
    )
    args = parser.parse_args(argv)
    if args.duration < 2 or args.ingests < 1:
        parser.error("--duration must be at least 2 and --ingests at least 1")
    try:
        results = run(Plan.for_args(args.duration, args.ingests))
    except INFRA_ERRORS as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        print(f"agent_overhead: infrastructure failure: {reason}", file=sys.stderr)
        return 1
    report(results)
    if min(results.window.live) < args.ingests:
        print(
            f"agent_overhead: the load fell below {args.ingests} live ingests during the window",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
