"""What the history costs the live stream, and how fast its stats answer.

1. Simulated agents report 1 000 newly finished pulls a second (``--rate``) for ``--duration``
   seconds over real HTTP on loopback, while 256 clients (``--clients``) follow the event
   stream; each pull's id carries the time its report was sent, and the clients measure when
   they read its ``pull.completed`` event. The same load runs against a collector with the
   history off and one with it on (SQLite in a temporary directory), in the same run, each
   collector alone in its own process. Target: the p99 with the history at most 10 % above the
   p99 without.
2. ``stats --by image`` (and by node and repository) over ``--pulls`` stored pulls (1 million),
   written through the store's own batched writes, with and without a 7-day window. Target:
   at most 200 ms on SQLite. ``--postgres`` runs the same on a private PostgreSQL cluster
   (testkit/postgres.py; needs Debian's postgresql).

Run from the repository root (no root, no containerd, no cluster)::

    python -m bench.history [--duration 60] [--rate 1000] [--clients 256] [--pulls 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from pulltrace.model import AgentReport, LayerStatus, PullStatus, encode
from testkit.util import free_port

NODES = 200
"""Each node reports once a second (the collector allows two), with rate / NODES new pulls."""
WARMUP = 5.0
SAMPLE_EVERY = 4
"""Each client reads every byte but looks for latency marks in one chunk in this many."""
CLIENT_PROCS = 2
TARGET_RATIO = 1.10
TARGET_STATS_MS = 200.0
MARK = re.compile(rb'"id":"h(\d{13})-')


class BenchError(Exception):
    pass


# -- the load ---------------------------------------------------------------------------------


def finished(node: int, seq: int, sent_ms: int) -> PullStatus:
    pull_id = f"h{sent_ms}-{node}-{seq}"
    digest = "sha256:" + hashlib.sha256(pull_id.encode()).hexdigest()
    now = datetime.fromtimestamp(sent_ms / 1000, UTC)
    start = now - timedelta(seconds=5)
    size = 20 << 20
    layer = LayerStatus(digest=digest.replace("sha256:", "sha256:f"[:7]), total_bytes=size,
                        downloaded_bytes=size, percent=100.0, started_at=start, completed_at=now,
                        total_known=True)  # fmt: skip
    image = seq % 300
    return PullStatus(
        id=pull_id, node_name=f"node-{node:03}",
        image_ref=f"registry.example.com/team/app-{image}@{digest}",
        repository=f"registry.example.com/team/app-{image}", manifest_digest=digest,
        phase="completed", total_bytes=size, downloaded_bytes=size, percent=100.0,
        layer_count=1, layers_done=1, started_at=start, completed_at=now, layers=[layer],
        total_known=True,
    )  # fmt: skip


async def _agents(url: str, rate: int, duration: float, out: Connection) -> None:
    nodes = min(NODES, rate)
    per_report = max(1, rate // nodes)
    sent = errors = 0
    end = time.time() + duration
    async with httpx.AsyncClient(base_url=url, timeout=10,
                                 limits=httpx.Limits(max_connections=NODES)) as client:  # fmt: skip

        async def node(n: int) -> None:
            nonlocal sent, errors
            await asyncio.sleep(n / nodes)
            seq = 0
            tick = time.time()
            while tick < end:
                sent_ms = int(time.time() * 1000)
                pulls = [finished(n, seq + i, sent_ms) for i in range(per_report)]
                seq += per_report
                report = AgentReport(node_name=f"node-{n:03}", timestamp=datetime.now(UTC),
                                     pulls=pulls, agent_version="bench")  # fmt: skip
                try:
                    reply = await client.post("/api/v1/report", content=encode(report))
                    if reply.status_code == 204:
                        sent += per_report
                    else:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                tick += 1.0
                await asyncio.sleep(max(0.0, tick - time.time()))

        await asyncio.gather(*(node(n) for n in range(nodes)))
    out.send((sent, errors))


def agent_worker(url: str, rate: int, duration: float, out: Connection) -> None:
    asyncio.run(_agents(url, rate, duration, out))


class Stream(asyncio.Protocol):
    def __init__(self, since_ms: int, lat: list[float], index: int) -> None:
        self.since_ms = since_ms
        self.lat = lat
        self.chunks = index
        self.bytes = 0

    def data_received(self, data: bytes) -> None:
        self.bytes += len(data)
        self.chunks += 1
        if self.chunks % SAMPLE_EVERY:
            return
        now_ms = time.time() * 1000
        for match in MARK.finditer(data):
            sent = int(match.group(1))
            if sent >= self.since_ms:
                self.lat.append(now_ms - sent)


async def _clients(port: int, count: int, since_ms: int, duration: float, out: Connection) -> None:
    loop = asyncio.get_running_loop()
    lat: list[float] = []
    request = (f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               "Accept: text/event-stream\r\n\r\n").encode()  # fmt: skip
    transports = []
    for i in range(count):
        transport, _ = await loop.create_connection(
            lambda i=i: Stream(since_ms, lat, i), "127.0.0.1", port
        )
        transport.write(request)
        transports.append(transport)
    out.send("connected")
    await asyncio.sleep(duration)
    for transport in transports:
        transport.close()
    out.send(lat)


def client_worker(port: int, count: int, since_ms: int, duration: float, out: Connection) -> None:
    asyncio.run(_clients(port, count, since_ms, duration, out))


def start_collector(env_extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PULLTRACE_", "KUBERNETES_")) and k != "KUBECONFIG"}  # fmt: skip
    env.update(PULLTRACE_LOG_LEVEL="warning", HOME=tempfile.mkdtemp(), **env_extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pulltrace.cli", "collector", "--listen", f"127.0.0.1:{port}",
         "--metrics-listen", "127.0.0.1:0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the collector exited: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    raise BenchError("the collector did not start")


def run_stream(label: str, env_extra: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    proc, port = start_collector(env_extra)
    ctx = multiprocessing.get_context("spawn")
    try:
        since_ms = int((time.time() + WARMUP) * 1000)
        pipes, workers = [], []
        per = args.clients // CLIENT_PROCS
        for i in range(CLIENT_PROCS):
            count = per + (args.clients % CLIENT_PROCS if i == 0 else 0)
            mine, theirs = ctx.Pipe()
            span = args.duration + WARMUP + 3
            w = ctx.Process(target=client_worker, args=(port, count, since_ms, span, theirs))
            w.start()
            pipes.append(mine)
            workers.append(w)
        for pipe in pipes:
            if not pipe.poll(60):
                raise BenchError("the clients did not connect")
            pipe.recv()
        mine, theirs = ctx.Pipe()
        agents = ctx.Process(target=agent_worker,
                             args=(f"http://127.0.0.1:{port}", args.rate,
                                   args.duration + WARMUP, theirs))  # fmt: skip
        agents.start()
        sent, errors = mine.recv()
        lat: list[float] = []
        for pipe in pipes:
            lat += pipe.recv()
        for w in [*workers, agents]:
            w.join(timeout=30)
        stored = None
        if "PULLTRACE_DATA_DIR" in env_extra:
            page = httpx.get(f"http://127.0.0.1:{port}/api/v1/history?limit=1", timeout=10)
            stored = page.status_code
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    lat.sort()
    if not lat:
        raise BenchError(f"{label}: no latency samples")
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {"label": label, "sent": sent, "errors": errors, "samples": len(lat),
            "p50": q[49], "p99": q[98], "max": lat[-1], "history": stored}  # fmt: skip


# -- stats over a million pulls -----------------------------------------------------------------


def fill(history: Any, count: int, seed: int = 1) -> float:
    from pulltrace.collector.history.recorder import finished_pull

    rng = random.Random(seed)
    t0 = datetime.now(UTC) - timedelta(days=30)
    step = 30 * 86400 / count
    batch: list[Any] = []
    began = time.perf_counter()
    for i in range(count):
        image = int(rng.paretovariate(1.2)) % 1000
        start = t0 + timedelta(seconds=i * step)
        batch.append(finished_pull(PullStatus(
            id=f"p{i}", node_name=f"node-{rng.randrange(200):03}",
            image_ref=f"registry.example.com/team/app-{image}:v{image % 7}",
            repository=f"registry.example.com/team/app-{image}",
            phase="failed" if rng.random() < 0.03 else "completed",
            downloaded_bytes=rng.randrange(10**6, 10**9), started_at=start,
            completed_at=start + timedelta(seconds=rng.lognormvariate(3, 1)),
            layer_count=8, layers_done=8)))  # fmt: skip
        if len(batch) == 5000:
            history.write(batch)
            batch = []
    history.write(batch)
    return time.perf_counter() - began


def time_stats(history: Any, repeats: int = 5) -> dict[str, float]:
    out: dict[str, float] = {}
    week = time.time() - 7 * 86400
    for by in ("image", "node", "repository"):
        for label, since in (("all", None), ("7d", week)):
            times = []
            for _ in range(repeats):
                began = time.perf_counter()
                history.stats(by, since)
                times.append((time.perf_counter() - began) * 1000)
            out[f"{by} {label}"] = statistics.median(times)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--pulls", type=int, default=1_000_000)
    parser.add_argument("--skip-stream", action="store_true")
    parser.add_argument("--skip-stats", action="store_true")
    parser.add_argument("--postgres", action="store_true", help="also stats on PostgreSQL")
    args = parser.parse_args(argv)
    try:
        if not args.skip_stream:
            off = run_stream("history off", {}, args)
            data = tempfile.mkdtemp(prefix="pulltrace-bench-")
            on = run_stream("history on (SQLite)", {"PULLTRACE_DATA_DIR": data,
                            "PULLTRACE_HISTORY_RETENTION": "3650d"}, args)  # fmt: skip
            from pulltrace.collector.history.sqlite import SqliteHistory

            store = SqliteHistory(data)
            stored = store.count()
            store.close()
            print(f"event stream: {args.rate} finished pulls/s for {args.duration:g}s,"
                  f" {args.clients} clients, latency report sent -> event read")  # fmt: skip
            for r in (off, on):
                print(f"  {r['label']:<22} p50 {r['p50']:7.1f} ms  p99 {r['p99']:7.1f} ms"
                      f"  max {r['max']:7.1f} ms  ({r['samples']} samples, {r['sent']} pulls"
                      f" acknowledged, {r['errors']} report errors)")  # fmt: skip
            print(f"  rows in the history after the run: {stored} of {on['sent']}")
            ratio = on["p99"] / off["p99"]
            verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
            print(f"  p99 on/off: {ratio:.2f} (target <= {TARGET_RATIO:.2f}): {verdict}")
        if not args.skip_stats:
            from pulltrace.collector.history.sqlite import SqliteHistory

            backends: list[tuple[str, Any, Any]] = [
                ("SQLite", SqliteHistory(tempfile.mkdtemp(prefix="pulltrace-stats-")), None)
            ]
            if args.postgres:
                from pulltrace.collector.history.postgres import PostgresHistory
                from testkit.postgres import PostgresServer

                server = PostgresServer().start()
                backends.append(("PostgreSQL", PostgresHistory(server.fresh_database()), server))
            for name, history, server in backends:
                took = fill(history, args.pulls)
                speed = args.pulls / took
                print(f"stats over {history.count()} stored pulls ({name}; written in"
                      f" {took:.0f}s, {speed:.0f} pulls/s through batched writes)")  # fmt: skip
                for label, ms in time_stats(history).items():
                    verdict = "PASS" if ms <= TARGET_STATS_MS else "FAIL"
                    note = (
                        f": {verdict} (target <= {TARGET_STATS_MS:.0f} ms)"
                        if name == "SQLite"
                        else ""
                    )
                    print(f"  stats --by {label:<16} {ms:8.1f} ms (median of 5){note}")
                history.close()
                if server is not None:
                    server.stop()
    except BenchError as err:
        print(f"infrastructure failure: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
