"""The commands, flags and help of ``pulltrace``, declared for Typer.

This module only declares: every command body imports what it runs inside the function, so
that ``--version``, ``--help`` and ``ls`` load neither textual, kubernetes, httpx nor grpc.
Flags shared by several commands are ``Annotated`` aliases, declared once and listed under the
same Rich help panel in each command.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
import typer.core
import typer.main
import typer.models

from pulltrace import __version__, parse
from pulltrace.cli import complete
from pulltrace.cli.params import plan_for
from pulltrace.errors import EXIT_ERROR, UsageError

if TYPE_CHECKING:
    from typer import _click as click  # Typer's vendored Click, the base of its classes


HEALTH_ENV = "PULLTRACE_AGENT_HEALTH_LISTEN"
MAX_SOCKET_PATH = 4096

SOURCE = "Source (default: PULLTRACE_SERVER, else the kubeconfig context)"
FILTERS = "Filters"
OUTPUT = "Output"
CONTAINERD = "containerd"
CLIENTS = "Commands"
ROLES = "In-cluster roles"
SHELL = "Shell"
HISTORY = "History (default: none; finished pulls live --history-ttl in memory)"
LIMITS = "Limits"


def _duration(text: str | float) -> float:
    """Typer's parser for duration flags: a bad value is a usage error naming the flag. The
    defaults (seconds) come through it too."""
    if isinstance(text, float):
        return text
    try:
        return parse.duration(text)
    except parse.ParseError as err:
        raise typer.BadParameter(str(err)) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pulltrace {__version__}")
        raise typer.Exit(0)


commands = typer.Typer(rich_markup_mode="rich")
"""Where the commands are declared; ``app`` turns one into a Click command when it is used."""


class _LazyGroup(typer.core.TyperGroup):
    """Builds a command's Click object only when that command runs, or when help or completion
    lists them all: Typer builds every command of a group up front, which reads the signature
    and annotations of each and costs about 20 ms of every start, ``ls`` and ``--version``
    included."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(declared())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        info = declared().get(cmd_name)
        if cmd_name not in self.commands and isinstance(info, typer.models.TyperInfo):
            self.commands[cmd_name] = typer.main.get_group_from_info(
                info, pretty_exceptions_short=True, suggest_commands=True, rich_markup_mode="rich"
            )
        elif cmd_name not in self.commands and isinstance(info, typer.models.CommandInfo):
            self.commands[cmd_name] = typer.main.get_command_from_info(
                info, pretty_exceptions_short=True, rich_markup_mode="rich"
            )
        return self.commands.get(cmd_name)


def declared() -> dict[str, typer.models.CommandInfo | typer.models.TyperInfo]:
    """The declared commands by the name Typer gives each, in declaration order, then the
    command groups (``updates``, with its ``dismiss``)."""
    found: dict[str, typer.models.CommandInfo | typer.models.TyperInfo] = {}
    for info in commands.registered_commands:
        name = info.name or typer.main.get_command_name(getattr(info.callback, "__name__", ""))
        found[name] = info
    for group in commands.registered_groups:
        found[str(group.name)] = group
    return found


app = typer.Typer(
    name="pulltrace",
    cls=_LazyGroup,
    help="Live container image pull progress for Kubernetes.",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Live container image pull progress for Kubernetes."""
    if ctx.invoked_subcommand is None and not ctx.resilient_parsing:
        typer.echo(ctx.get_help())
        raise typer.Exit(EXIT_ERROR)


# Where the data comes from; the first that applies wins (see README "Sources").
Server = Annotated[
    str,
    typer.Option(
        metavar="URL",
        help="Collector URL, e.g. http://localhost:8080 (env PULLTRACE_SERVER).",
        rich_help_panel=SOURCE,
        show_default=False,
    ),
]
Token = Annotated[
    str,
    typer.Option(
        metavar="TOKEN",
        help="Collector read token (env PULLTRACE_TOKEN).",
        rich_help_panel=SOURCE,
        show_default=False,
    ),
]
Kubeconfig = Annotated[
    str | None,
    typer.Option(
        metavar="FILE", help="Kubeconfig file (default as kubectl).", rich_help_panel=SOURCE
    ),
]
Context = Annotated[
    str | None,
    typer.Option(
        metavar="NAME",
        help="Kubeconfig context (default current).",
        rich_help_panel=SOURCE,
        autocompletion=complete.contexts,
    ),
]
CollectorNamespace = Annotated[
    str,
    typer.Option(metavar="NS", help="Namespace of the collector service.", rich_help_panel=SOURCE),
]
CollectorService = Annotated[
    str, typer.Option(metavar="NAME", help="Collector service name.", rich_help_panel=SOURCE)
]
Containerd = Annotated[
    str | None,
    typer.Option(
        metavar="SOCKET",
        help="containerd socket path or unix:// URL (default: /run/containerd/containerd.sock, "
        "or k3s's socket when only that exists; env PULLTRACE_CONTAINERD_SOCKET).",
        rich_help_panel=CONTAINERD,
    ),
]
ContainerdNamespace = Annotated[
    str,
    typer.Option(
        metavar="NS",
        envvar="PULLTRACE_CONTAINERD_NAMESPACE",
        help="containerd namespace to watch (k8s.io is where kubelet pulls).",
        rich_help_panel=CONTAINERD,
    ),
]
Demo = Annotated[
    bool,
    typer.Option(
        "--demo", help="A simulated 20-node cluster (no cluster needed).", rich_help_panel=SOURCE
    ),
]
Seed = Annotated[
    int, typer.Option(metavar="N", help="The demo's random seed.", rich_help_panel=SOURCE)
]

Namespace = Annotated[
    str | None,
    typer.Option(
        "-n",
        "--namespace",
        metavar="NS",
        help="Only pulls that pods of this namespace wait on.",
        rich_help_panel=FILTERS,
        autocompletion=complete.namespaces,
    ),
]
AllNamespaces = Annotated[
    bool,
    typer.Option(
        "-A",
        "--all-namespaces",
        help="Pulls for all namespaces (default).",
        rich_help_panel=FILTERS,
    ),
]
Node = Annotated[
    str | None,
    typer.Option(
        metavar="NODE",
        help="Only pulls on this node.",
        rich_help_panel=FILTERS,
        autocompletion=complete.nodes,
    ),
]
Image = Annotated[
    str,
    typer.Option(
        metavar="TEXT",
        help="Only images whose reference contains this.",
        rich_help_panel=FILTERS,
        show_default=False,
    ),
]


class Format(StrEnum):
    table = "table"
    wide = "wide"
    json = "json"


Flags = dict[str, object]
"""The source flags a command was given, by parameter name, for ``plan_for``."""
_SOURCE_FLAGS: tuple[tuple[str, object, object], ...] = (
    ("server", Server, ""),
    ("token", Token, ""),
    ("kubeconfig", Kubeconfig, None),
    ("context", Context, None),
    ("collector_namespace", CollectorNamespace, "pulltrace"),
    ("collector_service", CollectorService, "pulltrace-collector"),
    ("containerd", Containerd, None),
    ("containerd_namespace", ContainerdNamespace, "k8s.io"),
    ("demo", Demo, False),
    ("seed", Seed, 7),
)
_CONTAINERD_FLAGS = frozenset({"containerd", "containerd_namespace"})


def source_flags(*, containerd: bool) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Gives a command the source flags, declared here once: Typer reads a command's flags
    from its signature, so the decorated command's signature gains them (after its arguments)
    and the body receives them as one ``source`` mapping. ``containerd``: whether a local
    socket can serve the command (the history commands need a collector)."""

    def decorate(body: Callable[..., int]) -> Callable[..., int]:
        names = [n for n, _, _ in _SOURCE_FLAGS if containerd or n not in _CONTAINERD_FLAGS]
        flags = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=a, default=d)
            for n, a, d in _SOURCE_FLAGS
            if n in names
        ]
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(body, eval_str=True).parameters.values()
            if p.name != "source"
        ]
        arguments = [p for p in own if _is_argument(p.annotation)]
        options = [p for p in own if p not in arguments]

        @functools.wraps(body)
        def command(**given: object) -> int:
            return body(source={n: given.pop(n) for n in names}, **given)

        command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [*arguments, *flags, *options], return_annotation=int
        )
        return command

    return decorate


def _is_argument(annotation: object) -> bool:
    """Whether an ``Annotated`` parameter is a Typer argument (the only style used here)."""
    return any(
        isinstance(meta, typer.models.ArgumentInfo)
        for meta in getattr(annotation, "__metadata__", ())
    )


@commands.command(
    rich_help_panel=CLIENTS,
    help=("List image pulls from the collector, the cluster, a containerd socket or the demo."),
)
@source_flags(containerd=True)
def ls(
    *,
    source: Flags,
    namespace: Namespace = None,
    all_namespaces: AllNamespaces = False,
    node: Node = None,
    phase: Annotated[
        str,
        typer.Option(
            metavar="PHASES",
            help="Only pulls in these phases, comma-separated (e.g. failed).",
            rich_help_panel=FILTERS,
            show_default=False,
        ),
    ] = "",
    image: Image = "",
    output: Annotated[
        Format, typer.Option("-o", "--output", help="Output format.", rich_help_panel=OUTPUT)
    ] = Format.table,
    json: Annotated[
        bool, typer.Option("--json", help="Same as -o json.", rich_help_panel=OUTPUT)
    ] = (False),
    watch: Annotated[
        bool,
        typer.Option(
            "-w",
            "--watch",
            help="After the listing, print rows as they change.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    sample: Annotated[
        float,
        typer.Option(
            parser=_duration,
            metavar="DURATION",
            help="With --containerd: time between the two samples that measure speed.",
            show_default="1s",
            rich_help_panel=CONTAINERD,
        ),
    ] = 1.0,
) -> int:
    import sys

    from pulltrace.cli.params import query_for
    from pulltrace.commands.ls import print_listing

    fmt = "json" if json else output.value
    query = query_for(namespace, all_namespaces, node, phase, image)
    plan = plan_for(source)
    if not watch:
        print_listing(plan, query, fmt, sample)
        return 0
    import asyncio

    from pulltrace.commands.ls import watch_rows

    if plan.notice:
        print(f"pulltrace: {plan.notice}", file=sys.stderr)
    asyncio.run(watch_rows(plan, query, fmt))
    return 0


@commands.command(
    rich_help_panel=CLIENTS,
    help=(
        "Watch image pulls live: which images pull on which nodes, layer by layer, how "
        "fast, which pods wait. Press ? inside for keys."
    ),
)
@source_flags(containerd=True)
def watch(
    *,
    source: Flags,
    namespace: Namespace = None,
    all_namespaces: AllNamespaces = False,
    node: Node = None,
) -> int:
    import contextlib

    plan = plan_for(source)
    from pulltrace.tui.app import PulltraceApp

    namespaces = [namespace] if namespace and not all_namespaces else []
    with contextlib.ExitStack() as stack:
        live = plan.source(namespaces)
        history = plan.endpoint
        from pulltrace.cli.demo_collector import collector_installed

        if plan.kind == "demo" and collector_installed():
            # Through the real collector: the simulated agents report to it, and its history
            # and updates hold the seeded past week. Without the collector extra the demo
            # still runs, simulated in the client, and :history says it needs a collector.
            from pulltrace.cli.demo_collector import demo_collector
            from pulltrace.client.collector import CollectorSource

            history = stack.enter_context(demo_collector(plan.seed, live=True))
            live = CollectorSource(history, "demo", namespaces=namespaces)
        PulltraceApp(
            live,
            namespace=namespace,
            node=node,
            all_namespaces=all_namespaces,
            history=history,
        ).run()
    return 0


@commands.command(
    rich_help_panel=CLIENTS,
    help=(
        "Block until the selected pods' images are pulled (for CI), printing plain "
        "progress lines. An image already present counts.\n\nExit codes: 0 all pulled, 1 "
        "a pull failed, 2 timed out, 3 usage or connection error."
    ),
)
@source_flags(containerd=True)
def wait(
    pods: Annotated[
        list[str] | None,
        typer.Argument(metavar="[POD]...", help="Pod names (or use -l).", show_default=False),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            "-n",
            "--namespace",
            metavar="NS",
            help="The pods' namespace (default the context's).",
            rich_help_panel=FILTERS,
            autocompletion=complete.namespaces,
        ),
    ] = None,
    selector: Annotated[
        str,
        typer.Option(
            "-l",
            "--selector",
            metavar="SELECTOR",
            help="Label selector, as kubectl -l.",
            rich_help_panel=FILTERS,
            show_default=False,
        ),
    ] = "",
    image: Image = "",
    timeout: Annotated[
        float,
        typer.Option(
            parser=_duration,
            metavar="DURATION",
            help="Give up after this long.",
            show_default="10m",
        ),
    ] = 600.0,
    interval: Annotated[
        float,
        typer.Option(
            parser=_duration,
            metavar="DURATION",
            help="At most one progress line per pull this often.",
            show_default="5s",
        ),
    ] = 5.0,
    *,
    source: Flags,
) -> int:
    import asyncio

    from pulltrace.commands.wait import Printer, Selection
    from pulltrace.commands.wait import wait as wait_for
    from pulltrace.kube.config import current_namespace

    names = tuple(pods or ())
    if names and selector:
        raise UsageError("name pods or give -l, not both")
    plan = plan_for(source)
    kubeconfig = source["kubeconfig"]
    assert kubeconfig is None or isinstance(kubeconfig, str)
    pods_namespace = namespace or ("" if plan.cluster is None else current_namespace(kubeconfig))
    selection = Selection(pods_namespace, selector, names, image)
    printer = Printer(interval=interval, github=os.environ.get("GITHUB_ACTIONS") == "true")
    return asyncio.run(wait_for(plan, selection, timeout, printer))


@commands.command(
    rich_help_panel=ROLES,
    help=(
        "Run the node agent (DaemonSet role): poll this node's containerd and report "
        "pulls to the collector."
    ),
)
def agent(
    containerd: Containerd = None,
    containerd_namespace: ContainerdNamespace = "k8s.io",
    server: Annotated[
        str,
        typer.Option(envvar="PULLTRACE_SERVER_URL", help="Collector base URL.", show_default=False),
    ] = "",
    node: Annotated[
        str,
        typer.Option(
            envvar="PULLTRACE_NODE_NAME",
            help="Node name to report (default the hostname).",
            show_default=False,
        ),
    ] = "",
    interval: Annotated[
        float | None,
        typer.Option(
            parser=_duration,
            metavar="DURATION",
            help="Poll interval (env PULLTRACE_REPORT_INTERVAL; default 1s).",
        ),
    ] = None,
    stall_timeout: Annotated[
        float,
        typer.Option(
            parser=_duration,
            metavar="DURATION",
            help="A download that makes no progress this long is failed.",
            show_default="90s",
        ),
    ] = 90.0,
    health_listen: Annotated[
        str | None,
        typer.Option(
            metavar="ADDR",
            help=f'Serve GET /healthz and /readyz here (env {HEALTH_ENV}; default :8081; "off" '
            'or "" disables).',
        ),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error.")] = None,
) -> int:
    import socket

    from pulltrace import logs
    from pulltrace.agent.sockets import MISSING_CLIENT, candidates, client_installed
    from pulltrace.listen import parse_address

    if not client_installed():
        raise UsageError(MISSING_CLIENT)
    if not server:
        raise UsageError("agent needs --server or PULLTRACE_SERVER_URL (the collector's URL)")
    if not server.startswith(("http://", "https://")):
        raise UsageError(f"--server must be an http:// or https:// URL, not {server!r}")
    node = node or socket.gethostname()
    if not node or len(node) > 253:
        raise UsageError("agent needs a node name of 1-253 characters (--node)")
    interval = interval or _env_duration("PULLTRACE_REPORT_INTERVAL", "1s")
    sockets = candidates(containerd)
    if len(sockets[0]) > MAX_SOCKET_PATH:
        raise UsageError(f"--containerd: a socket path of at most {MAX_SOCKET_PATH} characters")
    health, health_source = health_listen, "--health-listen"
    if health is None:
        health = os.environ.get(HEALTH_ENV, ":8081")
        health_source = HEALTH_ENV
    health_address = None if health.strip() in ("", "off") else parse_address(health, health_source)
    logs.setup(log_level)
    from pulltrace.agent.daemon import AgentConfig, run

    config = AgentConfig(
        server=server,
        node_name=node,
        containerd=sockets,
        namespace=containerd_namespace,
        interval=interval,
        token=os.environ.get("PULLTRACE_AGENT_TOKEN", ""),
        stall_timeout=stall_timeout,
        health_listen=health_address,
    )
    return run(config)


@commands.command(
    rich_help_panel=ROLES,
    help=(
        "Run the collector (in-cluster Deployment): aggregate agent reports and serve "
        "them to watch, ls and wait. Tokens come from PULLTRACE_AGENT_TOKEN and "
        "PULLTRACE_READ_TOKEN only."
    ),
)
def collector(
    listen: Annotated[str, typer.Option(help="API address (:8080 is every interface).")] = ":8080",
    metrics_listen: Annotated[str, typer.Option(help="Address of /metrics.")] = ":9090",
    history_ttl: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Keep finished pulls this long (env PULLTRACE_HISTORY_TTL; default 30m).",
        ),
    ] = None,
    watch_namespaces: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated namespaces whose pods to match (env "
            "PULLTRACE_WATCH_NAMESPACES; default all).",
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(help="debug, info, warning, error (env PULLTRACE_LOG_LEVEL)."),
    ] = None,
    max_pulls: Annotated[
        str | None,
        typer.Option(
            metavar="N",
            help="Pulls held in memory; the longest finished go first (env PULLTRACE_MAX_PULLS).",
            rich_help_panel=LIMITS,
        ),
    ] = None,
    max_nodes: Annotated[
        str | None,
        typer.Option(
            metavar="N",
            help="Nodes with an agent; the longest silent go first (env PULLTRACE_MAX_NODES).",
            rich_help_panel=LIMITS,
        ),
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(
            metavar="DIR",
            help="Keep the pull history and image updates in SQLite here (env PULLTRACE_DATA_DIR).",
            rich_help_panel=HISTORY,
        ),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Keep them in PostgreSQL instead: a postgresql:// URL (env PULLTRACE_DATABASE, "
            "the better place for a URL with a password).",
            rich_help_panel=HISTORY,
        ),
    ] = None,
    history_retention: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Forget finished pulls older than this (env PULLTRACE_HISTORY_RETENTION; "
            "default 30d).",
            rich_help_panel=HISTORY,
        ),
    ] = None,
    history_max_pulls: Annotated[
        str | None,
        typer.Option(
            metavar="N",
            help="At most this many pulls in the history, the oldest forgotten first (env "
            "PULLTRACE_HISTORY_MAX_PULLS; default 1000000).",
            rich_help_panel=HISTORY,
        ),
    ] = None,
) -> int:
    from pulltrace import logs
    from pulltrace.collector.config import CollectorConfig

    config = CollectorConfig.from_flags(
        listen=listen,
        metrics_listen=metrics_listen,
        history_ttl=history_ttl,
        log_level=log_level,
        watch_namespaces=watch_namespaces,
        max_pulls=max_pulls,
        max_nodes=max_nodes,
        data_dir=data_dir,
        database=database,
        history_retention=history_retention,
        history_max_pulls=history_max_pulls,
    )
    logs.setup(config.log_level)
    from pulltrace.collector.server import run

    return run(config)


class TableOrJson(StrEnum):
    table = "table"
    json = "json"


Output = Annotated[
    Format, typer.Option("-o", "--output", help="Output format.", rich_help_panel=OUTPUT)
]
ShortOutput = Annotated[
    TableOrJson, typer.Option("-o", "--output", help="Output format.", rich_help_panel=OUTPUT)
]
Since = Annotated[
    str,
    typer.Option(
        metavar="WHEN",
        help="Only pulls that finished since then: a duration back from now (24h, 7d) or an "
        "RFC 3339 time.",
        rich_help_panel=FILTERS,
        show_default=False,
    ),
]
HISTORY_LIMIT_MAX = 100_000


def _when(text: str, flag: str) -> str:
    """A ``--since``/``--until`` value checked here, so that a typo is a usage line naming the
    flag rather than the collector's 400; the collector reads the same forms."""
    from datetime import datetime

    value = text.strip()
    if not value or (value[:-1].isdigit() and value.endswith("d") and len(value) <= 6):
        return value
    try:
        parse.duration(value)
        return value
    except parse.ParseError:
        pass
    try:
        datetime.fromisoformat(value)
        return value
    except ValueError:
        raise UsageError(
            f"{flag}: {value[:64]!r} is neither a duration (24h, 7d) nor an RFC 3339 time"
        ) from None


@commands.command(
    rich_help_panel=CLIENTS,
    help="List finished pulls from the collector's history, newest first (needs a collector "
    "with --data-dir or --database).",
)
@source_flags(containerd=False)
def history(
    *,
    source: Flags,
    image: Image = "",
    node: Annotated[
        str,
        typer.Option(
            metavar="NODE",
            help="Only pulls on this node.",
            rich_help_panel=FILTERS,
            show_default=False,
            autocompletion=complete.nodes,
        ),
    ] = "",
    phase: Annotated[
        str,
        typer.Option(
            metavar="PHASE",
            help="Only completed or only failed pulls.",
            rich_help_panel=FILTERS,
            show_default=False,
        ),
    ] = "",
    since: Since = "",
    until: Annotated[
        str,
        typer.Option(
            metavar="WHEN",
            help="Only pulls that finished before then (a duration back from now, or a time).",
            rich_help_panel=FILTERS,
            show_default=False,
        ),
    ] = "",
    limit: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=1,
            max=HISTORY_LIMIT_MAX,
            help="At most this many pulls (read page by page).",
            rich_help_panel=OUTPUT,
        ),
    ] = 100,
    output: Output = Format.table,
) -> int:
    import sys

    from pulltrace.cli.demo_collector import collector_endpoint
    from pulltrace.client.history import HistoryClient
    from pulltrace.commands.history import format_history
    from pulltrace.model import HISTORY_PAGE_MAX, FinishedPull, HistoryList

    if phase not in ("", "completed", "failed"):
        raise UsageError(f"--phase: completed or failed, not {phase[:32]!r}")
    window = {"since": _when(since, "--since"), "until": _when(until, "--until")}
    plan = plan_for(source)
    with collector_endpoint(plan, "history") as endpoint:
        client = HistoryClient(endpoint)
        pulls: list[FinishedPull] = []
        after: str | None = ""
        while after is not None and len(pulls) < limit:
            page = client.history(
                image=image,
                node=node,
                phase=phase,
                limit=min(limit - len(pulls), HISTORY_PAGE_MAX),
                continue_=after,
                **window,
            )
            pulls += page.pulls[: limit - len(pulls)]
            after = page.continue_ or None
            if not page.pulls:
                break
    sys.stdout.write(format_history(HistoryList(pulls=pulls, continue_=after), output.value))
    return 0


class StatsBy(StrEnum):
    image = "image"
    node = "node"
    repository = "repository"


@commands.command(
    rich_help_panel=CLIENTS,
    help="Pull statistics from the collector's history per image, node or repository: "
    "pulls, failures, bytes, and the p50/p95/max of the time taken and of the speed.",
)
@source_flags(containerd=False)
def stats(
    *,
    source: Flags,
    by: Annotated[
        StatsBy, typer.Option(help="Group the pulls by this.", rich_help_panel=FILTERS)
    ] = StatsBy.image,
    since: Annotated[
        str,
        typer.Option(
            metavar="WHEN",
            help="Pulls that finished since then: a duration back from now or an RFC 3339 "
            'time ("" for all).',
            rich_help_panel=FILTERS,
        ),
    ] = "7d",
    output: ShortOutput = TableOrJson.table,
) -> int:
    import sys

    from pulltrace.cli.demo_collector import collector_endpoint
    from pulltrace.client.history import HistoryClient
    from pulltrace.commands.history import format_stats

    window = _when(since, "--since")
    plan = plan_for(source)
    with collector_endpoint(plan, "stats") as endpoint:
        result = HistoryClient(endpoint).stats(by=by.value, since=window)
    sys.stdout.write(format_stats(result, output.value))
    return 0


updates_app = typer.Typer(
    name="updates",
    rich_markup_mode="rich",
    invoke_without_command=True,
    no_args_is_help=False,
    help="List the image updates DIUN announced to the collector (its webhook); dismissed "
    "ones only with --all. [bold]pulltrace updates dismiss IMAGE[/bold] dismisses one.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
commands.add_typer(updates_app, name="updates", rich_help_panel=CLIENTS)


@updates_app.callback()
@source_flags(containerd=False)
def updates(
    ctx: typer.Context,
    *,
    source: Flags,
    show_all: Annotated[
        bool,
        typer.Option("--all", help="Dismissed updates too.", rich_help_panel=FILTERS),
    ] = False,
    output: ShortOutput = TableOrJson.table,
) -> int:
    if ctx.invoked_subcommand is not None:
        return 0  # its flags are the subcommand's, with these as the fallback
    import sys

    from pulltrace.cli.demo_collector import collector_endpoint
    from pulltrace.client.history import HistoryClient
    from pulltrace.commands.history import format_updates, visible_updates

    plan = plan_for(source)
    with collector_endpoint(plan, "updates") as endpoint:
        every = HistoryClient(endpoint).updates()
    shown = visible_updates(every, show_all)
    hidden = len(every.updates) - len(shown.updates)
    sys.stdout.write(format_updates(shown, output.value, hidden=hidden))
    return 0


@updates_app.command(help="Dismiss IMAGE's update: [bold]updates[/bold] no longer lists it.")
@source_flags(containerd=False)
def dismiss(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="The image reference, as listed.")],
    *,
    source: Flags,
) -> int:
    from pulltrace.cli.demo_collector import collector_endpoint
    from pulltrace.client.history import HistoryClient

    params = _with_parent(ctx)
    plan = plan_for(params)
    with collector_endpoint(plan, "updates dismiss") as endpoint:
        HistoryClient(endpoint).dismiss(image)
    typer.echo(f"dismissed {_printable(image)}")
    return 0


def _with_parent(ctx: typer.Context) -> dict[str, object]:
    """A subcommand's flags, each falling back to the group's (``updates --server U dismiss
    X`` reads the same collector as ``updates dismiss X --server U``)."""
    params: dict[str, object] = dict(ctx.parent.params) if ctx.parent else {}
    for name, value in ctx.params.items():
        source = ctx.get_parameter_source(name)
        if name not in params or (source is not None and source.name != "DEFAULT"):
            params[name] = value
    return params


def _printable(text: str) -> str:
    from pulltrace.render import REF_MAX, printable

    return printable(text, REF_MAX)


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


@commands.command(
    rich_help_panel=SHELL,
    help="Print the shell completion script, as kubectl completion does: for example "
    "[bold]source <(pulltrace completion bash)[/bold] in ~/.bashrc.",
)
def completion(shell: Annotated[Shell, typer.Argument(help="The shell to complete in.")]) -> int:
    # Typer's own generator, the one --show-completion uses (a private module: typer is pinned).
    from typer._completion_shared import get_completion_script

    script = get_completion_script(
        prog_name="pulltrace", complete_var=complete.COMPLETE_VAR, shell=shell.value
    )
    typer.echo(script)
    return 0


def _env_duration(name: str, default: str) -> float:
    raw = os.environ.get(name, default)
    try:
        return parse.duration(raw)
    except parse.ParseError as err:
        raise UsageError(f"{name}: {err}") from None
