"""Soak: the real agent and collector, with 32 event stream clients, for ten minutes of churn.

A leak does not show in a test that runs for seconds: a file descriptor per reconnected client,
a dict entry per finished pull or per deleted pod, a task per disconnect. It shows as memory
and descriptors that keep growing while the work stays the same. So this runs the shipped
``pulltrace agent`` and ``pulltrace collector`` processes against a real containerd, registry,
throttle and Kubernetes API double, keeps the work steady (pulls of fresh images, pods that
come and go, clients that drop and come back, a periodic ``pulltrace ls``), and compares the
RSS and open descriptors of both processes at the start of the window with the end. The peer
is each process itself at the start: flat is the target.

Run from the repository root, as root, with containerd and docker-registry installed::

    python -m bench.soak [--duration 600]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import psutil

from pulltrace.collector.config import CollectorConfig
from testkit.containerd import Containerd
from testkit.containerd import ContainerdError as DaemonError
from testkit.cri import cri_pull, cri_remove
from testkit.images import ImagePusher, PushedImage
from testkit.kube.apiserver import ApiServer
from testkit.kube.objects import Obj, pending_pod, pulled, pulling, running_pod
from testkit.proxy import ThrottleProxy
from testkit.registry import Registry, RegistryError
from testkit.stack import (
    PULLTRACE,
    READ_TOKEN,
    Collector,
    LoggedProcess,
    hermetic_env,
    start_agent,
    start_collector,
)
from testkit.util import MiB, wait_for

NODE = "soak-node"
NAMESPACE = "soak"
KUBE_TOKEN = "soak-kube"
SAMPLE_EVERY = 10.0
"""Seconds between two samples of RSS and descriptors; every sixth is printed."""
PRINT_EVERY = 60.0
PULL_TIMEOUT = 120.0
"""Far above the few seconds a pull takes: a pull that hits it is a failure to report."""
POD_LINGER = 20.0
"""Seconds a pod (and its kubelet Events) stays after its image is pulled, as a short job's
would, before it is deleted from the API double."""
RSS_SLACK = 0.10
RSS_SLACK_MIB = 5.0
FD_SLACK = 4
"""Descriptors that may come and go at any moment (a client between two connections, an
``ls`` or an agent report in flight) without being a leak."""
RING = CollectorConfig().ring_size
"""Events the collector keeps for clients that resume: memory that fills for as long as it
takes the cluster to publish that many, and is flat only afterwards."""
SETTLE = 30.0
"""The longest wait for every client to be connected before a measurement."""


class BenchError(Exception):
    """The setup, not pulltrace, went wrong: the figures would mean nothing."""


# -- what is measured ------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    rss: int
    fds: int


def group_usage(leader: int) -> Usage:
    """RSS and open descriptors summed over the process group the command runs in, so that
    anything it spawned is counted too."""
    rss = fds = 0
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) != leader:
                continue
            rss += proc.memory_info().rss
            fds += len(os.listdir(f"/proc/{proc.pid}/fd"))
        except (psutil.NoSuchProcess, ProcessLookupError, FileNotFoundError):
            continue
    if rss == 0:
        raise BenchError(f"process group {leader} is gone")
    return Usage(rss, fds)


@dataclass(frozen=True)
class Sample:
    at: float
    """Seconds since the window opened (negative during the warm-up)."""
    collector: Usage
    agent: Usage
    pulls: int
    events: list[int]
    connected: int
    connections: int
    hangups: int
    cuts: int
    published: int
    """Events the collector has published since the clients first connected: its ring of
    recent events holds up to ``ring_size`` of them, so until then it is still filling."""
    disk: int
    """Bytes under containerd's and the registry's directories: bounded, if the churn cleans
    up after itself."""


# -- load: event stream clients --------------------------------------------------------------


class StreamClient:
    """One ``/api/v1/events`` reader in a thread. It counts events and snapshots, reconnects
    when the stream is cut, and hangs up on purpose now and then (after an exponentially
    distributed time), coming back half the time with ``Last-Event-ID`` (the ring's resume)
    and half the time without (a fresh snapshot). Even clients ask for the plain stream, odd
    ones for gzip, as ``pulltrace watch`` does."""

    def __init__(self, index: int, url: str, reconnect_mean: float, stop: threading.Event) -> None:
        self.index = index
        self._url = url
        self._mean = reconnect_mean
        self._stop = stop
        self._rng = random.Random(index)
        self._lock = threading.Lock()
        self.events = 0
        self.snapshots = 0
        self.connects = 0
        self.hangups = 0
        self.cuts = 0
        """Streams that ended without the client asking: errors, or the collector closing."""
        self.refused = 0
        self.connected = False
        self.last_error = ""
        self._last_id: str | None = None
        self.first_id: int | None = None
        """The first event id this client saw, which is about the collector's first."""
        self.max_id = 0
        self._thread = threading.Thread(target=self._run, name=f"sse-{index}", daemon=True)

    def start(self) -> StreamClient:
        self._thread.start()
        return self

    def count(self) -> int:
        with self._lock:
            return self.events

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {READ_TOKEN}", "Accept": "text/event-stream"}
        if self.index % 2 == 0:
            headers["Accept-Encoding"] = "identity"
        timeout = httpx.Timeout(10.0, read=60.0)
        with httpx.Client(timeout=timeout, headers=headers) as client:
            while not self._stop.is_set():
                resume = self._last_id is not None and self._rng.random() < 0.5
                extra = {"Last-Event-ID": self._last_id} if resume and self._last_id else {}
                hang_up_at = time.monotonic() + self._rng.expovariate(1.0 / self._mean)
                try:
                    if self._read(client, extra, hang_up_at):
                        self.hangups += 1
                    else:
                        self.cuts += 1
                except httpx.HTTPError as exc:
                    self.cuts += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                finally:
                    self.connected = False
                self._stop.wait(self._rng.uniform(0.1, 2.0))

    def _read(self, client: httpx.Client, headers: dict[str, str], hang_up_at: float) -> bool:
        """One connection; True when it ended because this client hung up."""
        with client.stream("GET", self._url, headers=headers) as response:
            if response.status_code == 503:
                self.refused += 1
                self.last_error = "503: " + response.read().decode(errors="replace")[:200]
                return True
            if response.status_code != 200:
                self.last_error = f"HTTP {response.status_code}"
                return False
            self.connects += 1
            self.connected = True
            kind = ""
            for line in response.iter_lines():
                if line.startswith("id:"):
                    self._last_id = line[3:].strip()
                    with contextlib.suppress(ValueError):
                        seq = int(self._last_id)
                        self.max_id = max(self.max_id, seq)
                        if self.first_id is None:
                            self.first_id = seq
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif not line and kind:
                    with self._lock:
                        if kind == "snapshot":
                            self.snapshots += 1
                        else:
                            self.events += 1
                    kind = ""
                if self._stop.is_set() or time.monotonic() >= hang_up_at:
                    return True
        return False

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


# -- load: pulls, pods and kubelet Events ----------------------------------------------------


@dataclass
class Churn:
    """Pullers that each, over and over: push a fresh image, add a pod waiting for it and
    kubelet's Pulling Event, pull it over CRI through the throttle, mark the pod running with
    kubelet's Pulled Event, remove the image from containerd and the registry (so the disk stays
    bounded), and a little later delete the pod and its Events."""

    daemon: Containerd
    registry: Registry
    api: ApiServer
    proxy_host: str
    pullers: int
    stop: threading.Event
    completed: int = 0
    failed: int = 0
    last_error: str = ""
    bytes_pulled: int = 0
    pull_seconds: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _doomed: deque[tuple[float, list[Obj]]] = field(default_factory=deque)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Churn:
        for worker in range(self.pullers):
            thread = threading.Thread(
                target=self._work, args=(worker,), name=f"puller-{worker}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def _work(self, worker: int) -> None:
        rng = random.Random(1000 + worker)
        with ImagePusher(self.registry.url, first_seed=10_000_000 * (worker + 1)) as pusher:
            n = 0
            while not self.stop.is_set():
                n += 1
                layers = rng.randint(2, 4)
                size = rng.randint(MiB // 2, MiB)
                try:
                    image = pusher.image(layers, size, repo=f"soak/w{worker}-{n}")
                    self._pull(f"w{worker}-{n}", image)
                except Exception as exc:  # a soak reports failures and carries on
                    with self._lock:
                        self.failed += 1
                        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    self.stop.wait(1.0)

    def _pull(self, name: str, image: PushedImage) -> None:
        ref = image.ref_at(self.proxy_host)
        pod = pending_pod(name, NODE, ref, namespace=NAMESPACE)
        started = pulling(pod, datetime.now(UTC))
        self.api.add(pod)
        self.api.add(started)
        began = time.monotonic()
        try:
            cri_pull(self.daemon.address, ref, timeout=PULL_TIMEOUT)
            took = time.monotonic() - began
            repo = ref.rsplit(":", 1)[0]
            ran = running_pod(
                name, NODE, ref, f"{repo}@{image.manifest_digest}", namespace=NAMESPACE
            )
            self.api.modify(ran)
            done = pulled(pod, datetime.now(UTC), seconds=took, size=image.total_size)
            self.api.add(done)
            cri_remove(self.daemon.address, ref)
            with self._lock:
                self.completed += 1
                self.bytes_pulled += image.total_size
                self.pull_seconds.append(took)
                self._doomed.append((time.monotonic() + POD_LINGER, [ran, started, done]))
        except BaseException:
            with self._lock:
                self._doomed.append((time.monotonic() + POD_LINGER, [pod, started]))
            raise
        finally:
            digests = [image.manifest_digest, image.config_digest, *image.layer_digests]
            self.registry.forget(image.repo, digests)

    def reap(self) -> None:
        """Deletes the pods and Events whose linger is over (from the main thread)."""
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._doomed or self._doomed[0][0] > now:
                    return
                _, objs = self._doomed.popleft()
            for obj in objs:
                with contextlib.suppress(KeyError):
                    self.api.delete(obj)

    def done(self) -> tuple[int, int]:
        with self._lock:
            return self.completed, self.failed

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)


# -- load: pulltrace ls ----------------------------------------------------------------------


@dataclass
class LsProbe:
    """``pulltrace ls --server URL -o json`` every ``every`` seconds, as a script would."""

    url: str
    home: Path
    every: float
    stop: threading.Event
    runs: int = 0
    failures: int = 0
    last_pulls: int = 0
    last_seconds: float = 0.0
    last_error: str = ""
    _thread: threading.Thread | None = None

    def start(self) -> LsProbe:
        self._thread = threading.Thread(target=self._run, name="ls", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        env = hermetic_env(self.home)
        args = [*PULLTRACE, "ls", "--server", self.url, "--token", READ_TOKEN, "-o", "json"]
        while not self.stop.wait(self.every):
            began = time.monotonic()
            try:
                proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
                self.last_seconds = time.monotonic() - began
                if proc.returncode != 0:
                    raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[:300]}")
                self.last_pulls = len(json.loads(proc.stdout)["pulls"])
            except (OSError, ValueError, KeyError, RuntimeError, subprocess.SubprocessError) as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            self.runs += 1

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Results:
    start: Sample
    end: Sample
    samples: list[Sample]
    clients: list[StreamClient]
    churn: Churn
    ls: LsProbe
    resyncs: float | None
    pulls_seen: float | None
    complaints: tuple[int, int]
    """Warning and error log lines of the collector and of the agent."""


def mib(n: float) -> float:
    return n / MiB


def sample(
    at: float,
    collector: Collector,
    agent: LoggedProcess,
    churn: Churn,
    clients: list[StreamClient],
    dirs: list[Path],
) -> Sample:
    collector.process.check_alive()
    agent.check_alive()
    return Sample(
        at,
        group_usage(collector.process.proc.pid),
        group_usage(agent.proc.pid),
        churn.done()[0],
        [c.count() for c in clients],
        sum(c.connected for c in clients),
        sum(c.connects for c in clients),
        sum(c.hangups for c in clients),
        sum(c.cuts for c in clients),
        published(clients),
        sum(tree_bytes(d) for d in dirs),
    )


def published(clients: list[StreamClient]) -> int:
    firsts = [c.first_id for c in clients if c.first_id is not None]
    return max(c.max_id for c in clients) - min(firsts) if firsts else 0


def tree_bytes(root: Path) -> int:
    """What a directory takes on disk (``du``), files vanishing meanwhile ignored."""
    total = 0
    for parent, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(parent, name)).st_blocks * 512
    return total


def complaints(process: LoggedProcess) -> int:
    """Log records at warning level or above: a soak should leave none."""
    return sum(1 for r in process.records() if r.get("level") in ("warning", "error", "critical"))


def settle(clients: list[StreamClient], collector: Collector) -> None:
    """Measures with every client connected, so that start and end hold the same streams."""

    def all_in() -> bool:
        collector.process.check_alive()
        return all(c.connected for c in clients)

    with contextlib.suppress(TimeoutError):
        wait_for(all_in, SETTLE, "every event stream client connected", interval=0.05)


def line(s: Sample, first: Sample | None, churn: Churn, ls: LsProbe) -> str:
    c, a = s.collector, s.agent
    text = (
        f"[{s.at:6.0f}s] collector {mib(c.rss):6.1f} MiB {c.fds:4d} fds | "
        f"agent {mib(a.rss):6.1f} MiB {a.fds:4d} fds | pulls {s.pulls:5d} "
        f"(failed {churn.done()[1]}) | events/client {statistics.median(s.events):8.0f} | "
        f"clients {s.connected}/{len(s.events)} | ring {min(s.published, RING):5d}/{RING} | "
        f"ls {ls.last_pulls} pulls "
        f"{ls.last_seconds:.2f}s ({ls.failures} failed)"
    )
    if first is not None:
        text += f" | RSS x{c.rss / first.collector.rss:.3f} / x{a.rss / first.agent.rss:.3f}"
    return text


def run(args: argparse.Namespace) -> Results:
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pt-soak-")))
        registry = stack.enter_context(Registry())
        daemon = stack.enter_context(Containerd())
        daemon.add_registry_host(registry.host_port)
        proxy = stack.enter_context(ThrottleProxy(registry.host_port, rate=args.rate * MiB))
        daemon.add_registry_host(proxy.host_port)
        api = stack.enter_context(ApiServer(token=KUBE_TOKEN))
        ttl = ["--history-ttl", f"{args.history_ttl:g}s"]
        collector = start_collector(api.kubeconfig(tmp / "kubeconfig"), tmp, extra_args=ttl)
        stack.callback(collector.stop)
        agent = start_agent(collector.url, NODE, daemon.address, home=tmp, interval="1s")
        stack.callback(agent.stop)

        def agent_reported() -> bool:
            agent.check_alive()
            return collector.metric("pulltrace_agents_connected") == 1

        wait_for(agent_reported, 30, "the agent's first report")
        # Stopped first (the callbacks run in reverse): no thread touches a daemon being torn down.
        stack.callback(stop.set)

        url = f"{collector.url}/api/v1/events"
        clients = [StreamClient(i, url, args.reconnect_mean, stop) for i in range(args.clients)]
        for client in clients:
            client.start()
        churn = Churn(daemon, registry, api, proxy.host_port, args.pullers, stop).start()
        ls = LsProbe(collector.url, tmp, args.ls_every, stop).start()

        def check_load() -> None:
            done, failed = churn.done()
            if failed > 10 and failed > done:
                raise BenchError(
                    f"most pulls fail ({failed} of {done + failed}): {churn.last_error}"
                )

        dirs = [daemon.dir, registry.dir]
        began = time.monotonic()
        warm_print = began + PRINT_EVERY
        print(f"soak: warm-up {args.warmup:g}s ...", flush=True)
        while (now := time.monotonic()) - began < args.warmup:
            churn.reap()
            check_load()
            collector.process.check_alive()
            agent.check_alive()
            if now >= warm_print:
                warm = sample(now - began - args.warmup, collector, agent, churn, clients, dirs)
                print("warm   " + line(warm, None, churn, ls), flush=True)
                warm_print += PRINT_EVERY
            time.sleep(1.0)
        if churn.done()[0] == 0:
            raise BenchError(f"no pull completed in the warm-up: {churn.last_error or '?'}")

        settle(clients, collector)
        opened = time.monotonic()
        first = sample(0.0, collector, agent, churn, clients, dirs)
        samples = [first]
        print("start  " + line(first, None, churn, ls), flush=True)
        next_sample = opened + SAMPLE_EVERY
        next_print = opened + PRINT_EVERY
        while (now := time.monotonic()) < opened + args.duration:
            churn.reap()
            check_load()
            if now >= next_sample:
                s = sample(now - opened, collector, agent, churn, clients, dirs)
                samples.append(s)
                next_sample += SAMPLE_EVERY
                if now >= next_print:
                    print("       " + line(s, first, churn, ls), flush=True)
                    next_print += PRINT_EVERY
            time.sleep(min(1.0, max(0.0, next_sample - time.monotonic())))
        settle(clients, collector)
        last = sample(time.monotonic() - opened, collector, agent, churn, clients, dirs)
        samples.append(last)
        print("end    " + line(last, first, churn, ls), flush=True)
        resyncs = collector.metric("pulltrace_sse_resyncs_total")
        seen = collector.metric("pulltrace_pulls_total")
        logged = (complaints(collector.process), complaints(agent))
        stop.set()
        churn.join(PULL_TIMEOUT)
        ls.join(60)
        problems = [
            p for p, code in (("agent", agent.stop()), ("collector", collector.stop())) if code != 0
        ]
        for client in clients:
            client.join(10)
        if problems:
            tails = "\n".join(p.tail(30) for p in (agent, collector.process))
            print(f"soak: {', '.join(problems)} did not exit cleanly\n{tails}", file=sys.stderr)
        return Results(first, last, samples, clients, churn, ls, resyncs, seen, logged)
    raise AssertionError("unreachable")


# -- the report ------------------------------------------------------------------------------


def slope(at: list[float], values: list[float]) -> float:
    """Least-squares growth per hour over the window, from every sample, so that one noisy
    end point does not decide it."""
    if len(at) < 3:
        return 0.0
    return float(statistics.linear_regression([t / 3600 for t in at], values).slope)


def report(r: Results) -> None:
    start, end = r.start, r.end
    window = end.at - start.at
    print()
    print(
        f"window: {window:.0f} s, {len(r.clients)} event stream clients, pullers {r.churn.pullers}"
    )
    print(f"{'':24}{'start':>10}{'end':>10}{'end/start':>11}{'max':>10}{'trend/h':>10}")
    verdicts = []
    at = [s.at for s in r.samples]
    for name, usages in (
        ("collector", [s.collector for s in r.samples]),
        ("agent", [s.agent for s in r.samples]),
    ):
        a, b = usages[0], usages[-1]
        peak_rss = max(u.rss for u in usages)
        peak_fds = max(u.fds for u in usages)
        trend = slope(at, [mib(u.rss) for u in usages])
        fd_trend = slope(at, [float(u.fds) for u in usages])
        print(
            f"{name + ' RSS (MiB)':24}{mib(a.rss):10.1f}{mib(b.rss):10.1f}"
            f"{b.rss / a.rss:11.3f}{mib(peak_rss):10.1f}{trend:+10.1f}"
        )
        print(
            f"{name + ' open fds':24}{a.fds:10d}{b.fds:10d}"
            f"{b.fds / a.fds:11.3f}{peak_fds:10d}{fd_trend:+10.1f}"
        )
        rss_grew = mib(b.rss) > mib(a.rss) * (1 + RSS_SLACK) + RSS_SLACK_MIB
        fds_grew = b.fds > a.fds + FD_SLACK
        verdicts.append(
            f"{name}: RSS {'GREW' if rss_grew else 'flat'}, fds {'GREW' if fds_grew else 'flat'}"
        )
    events = [e - s for s, e in zip(start.events, end.events, strict=True)]
    pulls = end.pulls - start.pulls
    print()
    print(
        f"pulls completed in the window: {pulls} ({pulls / window * 60:.1f}/min), "
        f"{r.churn.completed} in all, {r.churn.failed} failed"
        + (f" (last: {r.churn.last_error})" if r.churn.failed else "")
    )
    if r.churn.pull_seconds:
        secs = r.churn.pull_seconds
        seen = f"{r.pulls_seen:.0f}" if r.pulls_seen is not None else "?"
        print(
            f"pull time: median {statistics.median(secs):.1f} s, max {max(secs):.1f} s; "
            f"{mib(r.churn.bytes_pulled):.0f} MiB pulled; the collector counted {seen} pulls"
        )
    print(
        f"events per client in the window: min {min(events)}, median "
        f"{statistics.median(events):.0f}, max {max(events)} "
        f"({statistics.median(events) / window:.1f}/s); total {sum(events)}"
    )
    print("  per client: " + " ".join(str(e) for e in events))
    print(
        f"streams in the window: {end.connections - start.connections} connections, "
        f"{end.hangups - start.hangups} hang-ups by the clients, "
        f"{end.cuts - start.cuts} cut otherwise; in all "
        f"{sum(c.refused for c in r.clients)} refused, "
        f"{sum(c.snapshots for c in r.clients)} snapshots; collector resyncs: "
        f"{r.resyncs if r.resyncs is not None else '?'}"
    )
    errors = {c.last_error for c in r.clients if c.last_error}
    if errors:
        print("  last client errors: " + "; ".join(sorted(errors)[:3]))
    print(
        f"pulltrace ls: {r.ls.runs} runs, {r.ls.failures} failed"
        + (f" (last: {r.ls.last_error})" if r.ls.failures else "")
    )
    print(
        f"disk (containerd + registry dirs): {mib(start.disk):.0f} MiB at the start, "
        f"{mib(end.disk):.0f} MiB at the end, {mib(max(s.disk for s in r.samples)):.0f} MiB max"
    )
    print(f"warning/error log lines: collector {r.complaints[0]}, agent {r.complaints[1]}")
    if start.published < RING:
        print(
            f"note: the collector's ring of recent events was still filling in the window "
            f"({min(start.published, RING)} -> {min(end.published, RING)} of {RING} events), "
            "so part of its RSS growth is that bound being reached, not a leak (as is, "
            "until 30 min, the Kubernetes index's history of kubelet's pulls)"
        )
    print()
    print(
        f"verdict (flat = RSS within +{RSS_SLACK:.0%} + {RSS_SLACK_MIB:g} MiB, "
        f"fds within +{FD_SLACK}): " + "; ".join(verdicts)
    )


INFRA_ERRORS = (
    BenchError,
    DaemonError,
    RegistryError,
    TimeoutError,
    RuntimeError,
    OSError,
    subprocess.SubprocessError,
    psutil.Error,
    httpx.HTTPError,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--duration", type=float, default=600.0, help="measuring window, seconds (default 600)")
    add("--warmup", type=float, default=120.0, help="seconds of churn before it (default 120)")
    add("--clients", type=int, default=32, help="event stream clients (default 32)")
    add("--pullers", type=int, default=4, help="pulls in flight at once (default 4)")
    add("--rate", type=float, default=4.0, help="throttle, MiB/s for all pulls (default 4)")
    add("--history-ttl", type=float, default=60.0, help="collector history, s (default 60)")
    add("--reconnect-mean", type=float, default=90.0, help="mean s between hang-ups (default 90)")
    add("--ls-every", type=float, default=30.0, help="s between pulltrace ls runs (default 30)")
    args = parser.parse_args(argv)
    if args.duration < SAMPLE_EVERY * 3 or args.clients < 1 or args.pullers < 1:
        parser.error(f"--duration must be at least {SAMPLE_EVERY * 3:g}, and counts at least 1")
    if os.geteuid() != 0:
        print("soak: infrastructure failure: needs root (containerd)", file=sys.stderr)
        return 1
    try:
        results = run(args)
    except INFRA_ERRORS as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        print(f"soak: infrastructure failure: {reason}", file=sys.stderr)
        return 1
    report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
