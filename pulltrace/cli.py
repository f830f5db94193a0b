"""The ``pulltrace`` command line. Roles and commands import their heavy modules lazily so that
``pulltrace --help`` and ``pulltrace ls`` start fast."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pulltrace import __version__, parse
from pulltrace.errors import EXIT_ERROR, EXIT_INTERRUPTED, PulltraceError, UsageError, exit_code

if TYPE_CHECKING:
    from pulltrace.client.connect import Plan, SourceArgs
    from pulltrace.client.store import Query

HEALTH_ENV = "PULLTRACE_AGENT_HEALTH_LISTEN"
MAX_SOCKET_PATH = 4096


def duration(text: str) -> float:
    """argparse's type for duration flags: its error message is the one argparse prints."""
    try:
        return parse.duration(text)
    except parse.ParseError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _env_duration(name: str, default: str) -> float:
    raw = os.environ.get(name, default)
    try:
        return parse.duration(raw)
    except parse.ParseError as err:
        raise UsageError(f"{name}: {err}") from None


def _add_containerd_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
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

    ls = sub.add_parser(
        "ls",
        help="list image pulls",
        description="List image pulls from the collector, the cluster, a containerd socket or "
        "the demo.",
    )
    _add_source_flags(ls)
    _add_filter_flags(ls)
    ls.add_argument(
        "-o",
        "--output",
        choices=("table", "wide", "json"),
        default="table",
        help="output format (default table)",
    )
    ls.add_argument("--json", action="store_true", help="same as -o json")
    ls.add_argument("--phase", default="", help="only pulls in this phase (e.g. failed)")
    ls.add_argument("--image", default="", help="only images whose reference contains this")
    ls.add_argument(
        "-w", "--watch", action="store_true", help="after the listing, print rows as they change"
    )
    ls.add_argument(
        "--sample",
        type=duration,
        default=1.0,
        help="with --containerd: time between the two samples that measure speed (default 1s)",
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
    agent.add_argument(
        "--health-listen",
        metavar="ADDR",
        default=None,
        help="serve GET /healthz and /readyz here (env PULLTRACE_AGENT_HEALTH_LISTEN; "
        'default :8081; "off" or "" disables)',
    )
    agent.add_argument("--log-level", default=None, help="debug, info, warning, error")
    _add_collector(sub)
    _add_watch(sub)
    _add_wait(sub)
    return parser


def _add_source_flags(p: argparse.ArgumentParser) -> None:
    """Where the data comes from; the first that applies wins (see README "Sources")."""
    group = p.add_argument_group("source (default: PULLTRACE_SERVER, else the kubeconfig context)")
    group.add_argument(
        "--server",
        default="",
        help="collector URL, e.g. http://localhost:8080 (env PULLTRACE_SERVER)",
    )
    group.add_argument("--token", default="", help="collector read token (env PULLTRACE_TOKEN)")
    group.add_argument("--kubeconfig", default=None, help="kubeconfig file (default as kubectl)")
    group.add_argument("--context", default=None, help="kubeconfig context (default current)")
    group.add_argument(
        "--collector-namespace",
        default="pulltrace",
        help="namespace of the collector service (default pulltrace)",
    )
    group.add_argument(
        "--collector-service",
        default="pulltrace-collector",
        help="collector service name (default pulltrace-collector)",
    )
    _add_containerd_flags(group)
    group.add_argument(
        "--demo", action="store_true", help="a simulated 20-node cluster (no cluster needed)"
    )
    group.add_argument("--seed", type=int, default=7, help="the demo's random seed (default 7)")


def _add_filter_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-n", "--namespace", default=None, help="only pulls that pods of this namespace wait on"
    )
    p.add_argument(
        "-A", "--all-namespaces", action="store_true", help="pulls for all namespaces (default)"
    )
    p.add_argument("--node", default=None, help="only pulls on this node")


def _source_args(args: argparse.Namespace) -> SourceArgs:
    from pulltrace.client.connect import SourceArgs

    return SourceArgs(
        server=args.server,
        token=args.token,
        kubeconfig=args.kubeconfig,
        context=args.context,
        collector_namespace=args.collector_namespace,
        collector_service=args.collector_service,
        containerd=args.containerd,
        containerd_namespace=args.containerd_namespace,
        demo=args.demo,
        seed=args.seed,
    )


def _plan(args: argparse.Namespace) -> Plan:
    """Resolves the source; raises a SourceError with one line for the user."""
    from pulltrace.client.connect import resolve

    return resolve(_source_args(args))


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
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(words)
    except SystemExit as exit:
        # argparse exits 2 on a bad flag; for wait, 2 means "timed out" to a pipeline
        if exit.code == EXIT_ERROR:
            return exit_code(next((w for w in words if w[:1] != "-"), ""))
        raise
    try:
        if args.command == "ls":
            return _ls(args)
        if args.command == "agent":
            return _agent(args)
        if args.command == "collector":
            return _collector(args)
        if args.command == "watch":
            return _watch(args)
        if args.command == "wait":
            return _wait(args)
    except PulltraceError as err:  # the one place our errors become a line and an exit code
        print(f"pulltrace: {err}", file=sys.stderr)
        return exit_code(args.command)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    parser.print_help()
    return EXIT_ERROR


def _query(args: argparse.Namespace, phase: str = "", text: str = "") -> Query:
    from pulltrace.client.store import Query

    namespace = "" if args.all_namespaces else args.namespace or ""
    phases = frozenset(p for p in phase.split(",") if p)
    return Query(text=text, node=args.node or "", namespace=namespace, phases=phases)


def _ls(args: argparse.Namespace) -> int:
    from pulltrace.commands import output
    from pulltrace.commands.ls import list_pulls

    fmt = "json" if args.json else args.output
    query = _query(args, args.phase, args.image)
    plan = _plan(args)
    if plan.notice:
        print(f"pulltrace: {plan.notice}", file=sys.stderr)
    if args.watch:
        import asyncio

        from pulltrace.commands.ls import watch_rows

        asyncio.run(watch_rows(plan, query, fmt))
        return 0
    listing = list_pulls(plan, query, args.sample)
    for line in listing.warnings:
        print(line, file=sys.stderr)
    sys.stdout.write(output.format_pulls(listing.pulls, fmt))
    return 0


def _agent(args: argparse.Namespace) -> int:
    from pulltrace import logs
    from pulltrace.agent.sockets import MISSING_CLIENT, candidates, client_installed
    from pulltrace.listen import parse_address

    if not client_installed():
        raise UsageError(MISSING_CLIENT)
    if not args.server:
        raise UsageError("agent needs --server or PULLTRACE_SERVER_URL (the collector's URL)")
    if not args.server.startswith(("http://", "https://")):
        raise UsageError(f"--server must be an http:// or https:// URL, not {args.server!r}")
    if not args.node or len(args.node) > 253:
        raise UsageError("agent needs a node name of 1-253 characters (--node)")
    interval = args.interval or _env_duration("PULLTRACE_REPORT_INTERVAL", "1s")
    sockets = candidates(args.containerd)
    if len(sockets[0]) > MAX_SOCKET_PATH:
        raise UsageError(f"--containerd: a socket path of at most {MAX_SOCKET_PATH} characters")
    health, health_source = args.health_listen, "--health-listen"
    if health is None:
        health = os.environ.get(HEALTH_ENV, ":8081")
        health_source = HEALTH_ENV
    health_address = None if health.strip() in ("", "off") else parse_address(health, health_source)
    logs.setup(args.log_level)
    from pulltrace.agent.daemon import AgentConfig, run

    config = AgentConfig(
        server=args.server,
        node_name=args.node,
        containerd=sockets,
        namespace=args.containerd_namespace,
        interval=interval,
        token=os.environ.get("PULLTRACE_AGENT_TOKEN", ""),
        stall_timeout=args.stall_timeout,
        health_listen=health_address,
    )
    return run(config)


def _collector(args: argparse.Namespace) -> int:
    from pulltrace import logs
    from pulltrace.collector.config import CollectorConfig

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


def _add_watch(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    watch = sub.add_parser(
        "watch",
        help="live terminal UI of image pulls",
        description="Watch image pulls live: which images pull on which nodes, layer by layer, "
        "how fast, which pods wait. Press ? inside for keys.",
    )
    _add_source_flags(watch)
    _add_filter_flags(watch)


def _watch(args: argparse.Namespace) -> int:
    plan = _plan(args)
    from pulltrace.tui.app import PulltraceApp

    namespaces = [args.namespace] if args.namespace and not args.all_namespaces else []
    app = PulltraceApp(
        plan.source(namespaces),
        namespace=args.namespace,
        node=args.node,
        all_namespaces=args.all_namespaces,
    )
    app.run()
    return 0


def _add_wait(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wait = sub.add_parser(
        "wait",
        help="block until the selected pods' images are pulled (for CI)",
        description="Wait until every image the selected pods need is on their nodes (an image "
        "already present counts), printing plain progress lines. Exit codes: 0 all pulled, "
        "1 a pull failed, 2 timed out, 3 usage or connection error.",
    )
    _add_source_flags(wait)
    wait.add_argument("pods", nargs="*", metavar="POD", help="pod names (or use -l)")
    wait.add_argument("-n", "--namespace", default=None, help="the pods' namespace")
    wait.add_argument("-l", "--selector", default="", help="label selector, as kubectl -l")
    wait.add_argument("--image", default="", help="only images whose reference contains this")
    wait.add_argument(
        "--timeout", type=duration, default=600.0, help="give up after this long (default 10m)"
    )
    wait.add_argument(
        "--interval",
        type=duration,
        default=5.0,
        help="at most one progress line per pull this often (default 5s)",
    )


def _wait(args: argparse.Namespace) -> int:
    import asyncio

    from pulltrace.commands.wait import Printer, Selection, wait
    from pulltrace.kube.config import current_namespace

    if args.pods and args.selector:
        raise UsageError("name pods or give -l, not both")
    plan = _plan(args)
    namespace = args.namespace or (
        "" if plan.cluster is None else current_namespace(args.kubeconfig)
    )
    selection = Selection(namespace, args.selector, tuple(args.pods), args.image)
    printer = Printer(interval=args.interval, github=os.environ.get("GITHUB_ACTIONS") == "true")
    return asyncio.run(wait(plan, selection, args.timeout, printer))


if __name__ == "__main__":
    raise SystemExit(main())
