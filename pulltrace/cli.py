"""The ``pulltrace`` command line. Roles and commands import their heavy modules lazily so that
``pulltrace --help`` and ``pulltrace ls`` start fast."""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from collections.abc import Sequence

from pulltrace import __version__

EXIT_USAGE = 2
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class UsageError(Exception):
    """A bad flag or environment value: reported as one line, exit code 2."""


def duration(text: str) -> float:
    """Seconds from ``1``, ``1.5s``, ``500ms``, ``10m`` or ``1h``, as Kubernetes tools accept."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 1s, 500ms, 2m)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]


def _env_duration(name: str, default: str) -> float:
    raw = os.environ.get(name, default)
    try:
        return duration(raw)
    except argparse.ArgumentTypeError as err:
        raise UsageError(f"{name}: {err}") from None


def containerd_socket(flag: str | None) -> str:
    from pulltrace.containerd import DEFAULT_SOCKET, K3S_SOCKET

    chosen = flag or os.environ.get("PULLTRACE_CONTAINERD_SOCKET")
    if chosen:
        return chosen
    if not os.path.exists(DEFAULT_SOCKET) and os.path.exists(K3S_SOCKET):
        return K3S_SOCKET
    return DEFAULT_SOCKET


def _add_containerd_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--containerd",
        metavar="SOCKET",
        help="containerd socket path or unix:// URL (default: /run/containerd/containerd.sock, "
        "or k3s's socket when only that exists; env PULLTRACE_CONTAINERD_SOCKET)",
    )
    p.add_argument(
        "--containerd-namespace",
        metavar="NS",
        default=os.environ.get("PULLTRACE_CONTAINERD_NAMESPACE", "k8s.io"),
        help="containerd namespace to watch (default k8s.io, where kubelet pulls)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pulltrace",
        description="Live container image pull progress for Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"pulltrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ls = sub.add_parser("ls", help="list image pulls", description="List image pulls.")
    _add_containerd_flags(ls)
    ls.add_argument(
        "-o",
        "--output",
        choices=("table", "wide", "json"),
        default="table",
        help="output format (default table)",
    )
    ls.add_argument("--json", action="store_true", help="same as -o json")
    ls.add_argument(
        "--sample",
        type=duration,
        default=1.0,
        help="time between the two samples that measure speed (default 1s)",
    )

    agent = sub.add_parser(
        "agent",
        help="run the node agent (DaemonSet role)",
        description="Poll this node's containerd and report pulls to the collector.",
    )
    _add_containerd_flags(agent)
    agent.add_argument(
        "--server",
        default=os.environ.get("PULLTRACE_SERVER_URL", ""),
        help="collector base URL (env PULLTRACE_SERVER_URL)",
    )
    agent.add_argument(
        "--node",
        default=os.environ.get("PULLTRACE_NODE_NAME") or socket.gethostname(),
        help="node name to report (env PULLTRACE_NODE_NAME; default the hostname)",
    )
    agent.add_argument("--interval", type=duration, default=None, help="poll interval (default 1s)")
    agent.add_argument(
        "--stall-timeout",
        type=duration,
        default=90.0,
        help="a download that makes no progress this long is failed (default 90s)",
    )
    agent.add_argument("--log-level", default=None, help="debug, info, warning, error")
    _add_collector(sub)
    _add_watch(sub)
    return parser


def _add_collector(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    collector = sub.add_parser(
        "collector",
        help="run the collector (in-cluster Deployment)",
        description="Aggregate agent reports and serve them to watch, ls and wait. Tokens come "
        "from PULLTRACE_AGENT_TOKEN and PULLTRACE_READ_TOKEN only.",
    )
    collector.add_argument(
        "--listen", default=":8080", help="API address (default :8080, every interface)"
    )
    collector.add_argument(
        "--metrics-listen", default=":9090", help="address of /metrics (default :9090)"
    )
    collector.add_argument(
        "--history-ttl",
        default=None,
        help="keep finished pulls this long (env PULLTRACE_HISTORY_TTL; default 30m)",
    )
    collector.add_argument(
        "--watch-namespaces",
        default=None,
        help="comma-separated namespaces whose pods to match (env PULLTRACE_WATCH_NAMESPACES; "
        "default all)",
    )
    collector.add_argument(
        "--log-level", default=None, help="debug, info, warning, error (env PULLTRACE_LOG_LEVEL)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "ls":
            return _ls(args)
        if args.command == "agent":
            return _agent(args)
        if args.command == "collector":
            return _collector(args)
        if args.command == "watch":
            return _watch(args)
    except UsageError as err:
        print(f"pulltrace: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    parser.print_help()
    return EXIT_USAGE


def _ls(args: argparse.Namespace) -> int:
    from pulltrace import local, output

    fmt = "json" if args.json else args.output
    address = containerd_socket(args.containerd)
    pulls = local.sample(address, args.containerd_namespace, args.sample)
    if pulls is None:
        return EXIT_USAGE
    sys.stdout.write(output.format_pulls(pulls, fmt))
    return 0


def _agent(args: argparse.Namespace) -> int:
    from pulltrace import logs

    if not args.server:
        raise UsageError("agent needs --server or PULLTRACE_SERVER_URL (the collector's URL)")
    if not args.node or len(args.node) > 253:
        raise UsageError("agent needs a node name of 1-253 characters (--node)")
    interval = args.interval or _env_duration("PULLTRACE_REPORT_INTERVAL", "1s")
    logs.setup(args.log_level)
    from pulltrace.agent import AgentConfig, run

    config = AgentConfig(
        server=args.server,
        node_name=args.node,
        containerd=containerd_socket(args.containerd),
        namespace=args.containerd_namespace,
        interval=interval,
        token=os.environ.get("PULLTRACE_AGENT_TOKEN", ""),
        stall_timeout=args.stall_timeout,
    )
    return run(config)


def _collector(args: argparse.Namespace) -> int:
    from pulltrace import logs
    from pulltrace.collector.config import CollectorConfig, ConfigError

    try:
        config = CollectorConfig.from_flags(
            listen=args.listen,
            metrics_listen=args.metrics_listen,
            history_ttl=args.history_ttl,
            log_level=args.log_level,
            watch_namespaces=args.watch_namespaces,
        )
        logs.setup(config.log_level)
        from pulltrace.collector.server import run

        return run(config)
    except ConfigError as err:
        raise UsageError(str(err)) from None


def _add_watch(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    watch = sub.add_parser(
        "watch",
        help="live terminal UI of image pulls",
        description="Watch image pulls live: which images pull on which nodes, layer by layer, "
        "how fast, which pods wait. Press ? inside for keys.",
    )
    watch.add_argument(
        "--demo", action="store_true", help="watch a simulated 20-node cluster (no cluster needed)"
    )
    watch.add_argument("--seed", type=int, default=7, help="the demo's random seed (default 7)")
    watch.add_argument(
        "-n", "--namespace", default=None, help="only pulls that pods of this namespace wait on"
    )
    watch.add_argument(
        "-A", "--all-namespaces", action="store_true", help="pulls for all namespaces (default)"
    )
    watch.add_argument("--node", default=None, help="only pulls on this node")


def _watch(args: argparse.Namespace) -> int:
    if not args.demo:
        raise UsageError("watch needs a source; try --demo")
    from pulltrace.client.demo import DemoSource
    from pulltrace.tui.app import PulltraceApp

    app = PulltraceApp(
        DemoSource(seed=args.seed),
        namespace=args.namespace,
        node=args.node,
        all_namespaces=args.all_namespaces,
    )
    app.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
