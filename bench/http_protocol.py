"""What the collector's HTTP protocol costs per agent report: the collector as it runs
(httptools with ``pulltrace.collector.protocol``'s limits) beside plain httptools and plain
h11, uvicorn's two parsers, the latter the only one with a header size setting.

Each variant is the real collector in its own process on loopback; 50 simulated agents send
reports on keep-alive connections as fast as the answers come, and the figure is the
collector process's CPU time (user + system) per report, which another load on the machine
disturbs less than wall time. No root, no containerd, no cluster::

    python -m bench.http_protocol [--reports 10000] [--connections 50]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from pulltrace.model import AgentReport, LayerStatus, PullStatus, encode
from testkit.util import free_port

VARIANTS = ("collector", "httptools", "h11")
SERVER = r"""
import asyncio, sys, uvicorn
import pulltrace.collector.server as server
from pulltrace.collector.config import CollectorConfig
variant, port = sys.argv[1], int(sys.argv[2])
if variant != "collector":
    def plain(app, limits, *, lifespan):
        return uvicorn.Config(app, lifespan=lifespan, http=variant, log_config=None,
                              access_log=False, proxy_headers=False, server_header=False)
    server._uvicorn_config = plain
config = CollectorConfig(listen=("127.0.0.1", port), metrics_listen=("127.0.0.1", 0),
                         reports_per_second=1e9)
with asyncio.Runner(loop_factory=server._loop_factory()) as runner:
    runner.run(server.Service(config).serve())
"""


class BenchError(Exception):
    """The setup, not the collector, went wrong."""


def report(node: str) -> bytes:
    """A node with one pull of three layers, as the agent sends it."""
    now = datetime.now(UTC)
    layers = [
        LayerStatus(digest=f"sha256:{node}-{i}", total_bytes=1000, downloaded_bytes=500)
        for i in range(3)
    ]
    pull = PullStatus(
        id=f"{node}-pull", node_name=node, phase="pulling", total_bytes=3000,
        downloaded_bytes=1500, started_at=now, layer_count=3, layers=layers, total_known=True,
    )  # fmt: skip
    return encode(AgentReport(node_name=node, timestamp=now, pulls=[pull], agent_version="b"))


async def agent(port: int, node: str, reports: int) -> None:
    payload = report(node)
    head = (
        f"POST /api/v1/report HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\n"
        f"Pulltrace-Node: {node}\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(reports):
            writer.write(head + payload)
            answer = await reader.readuntil(b"\r\n\r\n")
            if not answer.startswith(b"HTTP/1.1 204 "):
                raise BenchError(f"the collector answered {answer[:40]!r}")
    finally:
        writer.close()


async def load(port: int, connections: int, per_connection: int) -> None:
    await asyncio.gather(*(agent(port, f"node-{i}", per_connection) for i in range(connections)))


def measure(variant: str, connections: int, per_connection: int) -> float:
    """Collector CPU seconds per report."""
    port = free_port()
    argv = [sys.executable, "-c", SERVER, variant, str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError as err:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise BenchError(f"the {variant} collector did not start") from err
                time.sleep(0.1)
        ps = psutil.Process(proc.pid)
        asyncio.run(load(port, connections, max(1, per_connection // 10)))  # warm-up
        before = ps.cpu_times()
        asyncio.run(load(port, connections, per_connection))
        after = ps.cpu_times()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    cpu = float(after.user + after.system) - float(before.user + before.system)
    return cpu / (connections * per_connection)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=10000, help="per variant (10000)")
    parser.add_argument("--connections", type=int, default=50, help="agents at once (50)")
    args = parser.parse_args(argv)
    if args.reports < args.connections or args.connections < 1:
        parser.error("--reports must be at least --connections, which must be at least 1")
    per_connection = args.reports // args.connections
    try:
        cost = {v: measure(v, args.connections, per_connection) for v in VARIANTS}
    except (BenchError, OSError, psutil.Error, subprocess.SubprocessError) as err:
        print(f"http_protocol: infrastructure failure: {err}", file=sys.stderr)
        return 1
    n = per_connection * args.connections
    print(f"collector CPU per report, {n} reports on {args.connections} keep-alive connections")
    for variant in VARIANTS:
        ratio = cost[variant] / cost["httptools"]
        print(f"{variant:>10}  {1e6 * cost[variant]:6.0f} µs   x{ratio:.2f} of plain httptools")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
