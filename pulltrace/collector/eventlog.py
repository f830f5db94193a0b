"""One JSON log line per lifecycle event, in the ``PullEvent`` v1 shape (its fields at the top
level of the line), so a log pipeline can keep pull history without scraping the API.

Pull-level events log at info; layer events at debug, since an image has a dozen layers and a
busy cluster would drown its logs in them. Progress is never logged: the API has it.

A node going ``degraded`` or ``stale`` logs once, at warning, with its ``NodeStatus``; coming
back to ``ready`` at info. A node first seen ready, or whose reason changes while it stays
degraded, only at debug: a collector restart would otherwise log every node of the cluster.
"""

from __future__ import annotations

import logging

import msgspec

from pulltrace.model import PullEvent
from pulltrace.pullstore import NodeChange

log = logging.getLogger("pulltrace.collector.events")


def log_event(event: PullEvent) -> None:
    """A store listener."""
    if event.type == "pull.progress":
        return
    level = logging.DEBUG if event.type.startswith("layer.") else logging.INFO
    if log.isEnabledFor(level):
        log.log(level, event.type, extra=msgspec.to_builtins(event))


def log_node(change: NodeChange) -> None:
    """A store node listener."""
    state, before = change.status.state, change.before
    if change.kind == "node.removed":
        level, msg = logging.INFO, "node forgotten"
    elif state != "ready" and state != before:
        level, msg = logging.WARNING, f"node {state}: {change.status.error}"
    elif state == "ready" and before not in (None, "ready"):
        level, msg = logging.INFO, "node ready"
    else:
        level, msg = logging.DEBUG, f"node {state}"
    if log.isEnabledFor(level):
        log.log(level, msg, extra={"event": change.kind, **msgspec.to_builtins(change.status)})
