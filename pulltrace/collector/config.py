"""The collector's configuration, from flags with environment fallbacks.

Tokens come only from the environment (a Secret), never from flags, which anyone on the node can
read in the process list. The tuning fields are not flags: they exist so that tests and the
benchmark can shorten the ticks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pulltrace.listen import Address, ConfigError, parse_address
from pulltrace.parse import ParseError, duration
from pulltrace.pullstore import MAX_NODES, MAX_PULLS

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_RETENTION = 30 * 86400.0
DEFAULT_MAX_PULLS = 1_000_000
RETENTION_MAX = 10 * 366 * 86400.0
MAX_PULLS_LIMIT = 100_000_000
PATH_MAX = 4096
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    listen: Address = ("", 8080)
    metrics_listen: Address = ("", 9090)
    agent_token: str = ""
    read_token: str = ""
    watch_namespaces: tuple[str, ...] = ()
    history_ttl: float = 1800.0
    log_level: str = "info"
    max_report_bytes: int = 1 << 20
    reports_per_second: float = 2.0
    max_sse_clients: int = 256
    client_queue_bytes: int = 32 << 20
    """A client's backlog before it is resynchronised: some six seconds of a 5 000-node
    cluster's plain stream, a minute of its gzip stream."""
    ring_size: int = 16384
    tick_interval: float = 0.25
    stale_check_interval: float = 1.0
    fanout_interval: float = 0.1
    progress_interval: float = 0.5
    heartbeat_interval: float = 15.0
    max_pulls: int = MAX_PULLS
    """Pulls held (``--max-pulls``, ``PULLTRACE_MAX_PULLS``); over it the pull that finished
    longest ago is forgotten first, and a new pull is refused (429) when every one is in
    flight."""
    max_nodes: int = MAX_NODES
    """Nodes with an agent (``--max-nodes``, ``PULLTRACE_MAX_NODES``); over it the node whose
    agent has been silent longest is forgotten, with its pulls, and a new node is refused
    (429) when every agent is reporting."""
    max_list: int = 5000
    """The most pulls one page of ``GET /api/v1/pulls`` holds, and its default page size."""
    data_dir: str = ""
    """Where the SQLite history lives; with neither this nor ``database`` there is no history
    (finished pulls live ``history_ttl`` in memory, and the update endpoints answer 503)."""
    database: str = ""
    """A ``postgresql://`` URL: the history goes there instead of ``data_dir``."""
    history_retention: float = DEFAULT_RETENTION
    history_max_pulls: int = DEFAULT_MAX_PULLS
    webhook_secret: str = ""
    """What DIUN's ``Authorization`` header must be; empty accepts any (a Secret, env only)."""
    history_flush_interval: float = 0.5
    """Seconds between the history's batched writes: what a SIGKILL can lose, at most."""
    demo_history_seed: int | None = None
    """Not a flag: a demo collector (``--demo``) fills its history with ``pulltrace.sim``'s
    past week and two DIUN notices, in a temporary SQLite database when none is configured."""

    @classmethod
    def from_flags(
        cls,
        *,
        listen: str = ":8080",
        metrics_listen: str = ":9090",
        history_ttl: str | None = None,
        log_level: str | None = None,
        watch_namespaces: str | None = None,
        max_pulls: str | None = None,
        max_nodes: str | None = None,
        data_dir: str | None = None,
        database: str | None = None,
        history_retention: str | None = None,
        history_max_pulls: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CollectorConfig:
        """A flag left unset (None) falls back to its environment variable, then the default."""
        env = os.environ if env is None else env
        ttl, ttl_source = _pick(history_ttl, "--history-ttl", env, "PULLTRACE_HISTORY_TTL", "30m")
        level, level_source = _pick(log_level, "--log-level", env, "PULLTRACE_LOG_LEVEL", "info")
        level = level.lower()
        if level not in LOG_LEVELS:
            raise ConfigError(
                f"{level_source}: invalid log level {level!r} (one of {', '.join(LOG_LEVELS)})"
            )
        namespaces, ns_source = _pick(
            watch_namespaces, "--watch-namespaces", env, "PULLTRACE_WATCH_NAMESPACES", ""
        )
        pulls, pulls_source = _pick(
            max_pulls, "--max-pulls", env, "PULLTRACE_MAX_PULLS", str(MAX_PULLS)
        )
        nodes, nodes_source = _pick(
            max_nodes, "--max-nodes", env, "PULLTRACE_MAX_NODES", str(MAX_NODES)
        )
        history = history_flags(env, data_dir, database, history_retention, history_max_pulls)
        return cls(
            **history,
            webhook_secret=env.get("PULLTRACE_WEBHOOK_SECRET", ""),
            listen=parse_address(listen, "--listen"),
            metrics_listen=parse_address(metrics_listen, "--metrics-listen"),
            agent_token=env.get("PULLTRACE_AGENT_TOKEN", ""),
            read_token=env.get("PULLTRACE_READ_TOKEN", ""),
            watch_namespaces=parse_namespaces(namespaces, ns_source),
            history_ttl=_duration(ttl, ttl_source),
            log_level=level,
            max_pulls=_count(pulls, pulls_source),
            max_nodes=_count(nodes, nodes_source),
        )


def _pick(
    flag: str | None, flag_name: str, env: Mapping[str, str], env_name: str, default: str
) -> tuple[str, str]:
    """The value and where it came from, so that an error names what the user has to fix."""
    if flag is not None:
        return flag, flag_name
    return env.get(env_name) or default, env_name


def parse_namespaces(text: str, what: str = "watch namespaces") -> tuple[str, ...]:
    """Comma-separated; empty means every namespace."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if not _NAMESPACE.match(name):
            raise ConfigError(f"{what}: {name!r} is not a valid namespace name")
    return names


def _duration(text: str, what: str) -> float:
    try:
        return duration(text)
    except ParseError as err:
        raise ConfigError(f"{what}: {err}") from None


COUNT_MAX = 10_000_000


def _count(text: str, what: str) -> int:
    """A positive whole number, bounded: a cap beyond memory is no cap."""
    value = text.strip()
    if not value.isdigit() or not 1 <= int(value) <= COUNT_MAX:
        raise ConfigError(f"{what}: {text!r} is not a whole number from 1 to {COUNT_MAX}")
    return int(value)


def history_flags(
    env: Mapping[str, str],
    data_dir: str | None,
    database: str | None,
    retention: str | None,
    max_pulls: str | None,
) -> dict[str, Any]:
    """``--data-dir``, ``--database``, ``--history-retention`` and ``--history-max-pulls``
    (each with its ``PULLTRACE_`` variable), checked: the URL's scheme, the lengths, the
    retention (``30d``, ``12h``) and the size cap within bounds."""
    directory, dir_source = _pick(data_dir, "--data-dir", env, "PULLTRACE_DATA_DIR", "")
    url, url_source = _pick(database, "--database", env, "PULLTRACE_DATABASE", "")
    if len(directory) > PATH_MAX or "\0" in directory:
        raise ConfigError(f"{dir_source}: not a usable directory path")
    if url and (len(url) > PATH_MAX or not url.startswith(("postgresql://", "postgres://"))):
        # Never echo the value: a database URL can hold a password.
        raise ConfigError(f"{url_source}: must be a postgresql:// URL")
    kept, kept_source = _pick(
        retention, "--history-retention", env, "PULLTRACE_HISTORY_RETENTION", "30d"
    )
    seconds = _days(kept, kept_source)
    if not 60 <= seconds <= RETENTION_MAX:
        raise ConfigError(f"{kept_source}: {kept!r} is out of range (1m to 10 years)")
    cap, cap_source = _pick(
        max_pulls, "--history-max-pulls", env, "PULLTRACE_HISTORY_MAX_PULLS", str(DEFAULT_MAX_PULLS)
    )
    if not cap.strip().isdigit() or not 1 <= int(cap) <= MAX_PULLS_LIMIT:
        raise ConfigError(f"{cap_source}: {cap[:32]!r} is not a number of pulls (1 to 100000000)")
    return {
        "data_dir": directory,
        "database": url,
        "history_retention": seconds,
        "history_max_pulls": int(cap),
    }


def _days(text: str, what: str) -> float:
    """A duration that may also be whole days (``30d``), as retention is usually said."""
    stripped = text.strip()
    if stripped.endswith("d") and stripped[:-1].isdigit() and len(stripped) <= 8:
        return int(stripped[:-1]) * 86400.0
    return _duration(text, what)
