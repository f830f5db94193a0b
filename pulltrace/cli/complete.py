"""Dynamic shell completion: kubeconfig contexts for ``--context``, and namespaces and nodes for
``-n/--namespace`` and ``--node`` from the source the rest of the command line chooses.

A shell waits for these while the user waits for the tab, so each answer has a deadline and
every failure (no cluster, a refusing or silent collector, a broken kubeconfig) is simply no
suggestions: a completion never prints an error or a traceback into the user's prompt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import typer

COMPLETE_VAR = "_PULLTRACE_COMPLETE"
"""Typer's variable for the program name ``pulltrace``; the scripts set it to ask for words."""
DEADLINE = 1.0
"""Seconds a source may take to answer a completion before the answer is no suggestions."""
SAMPLE = 0.2
"""With --containerd: the gap between the two samples a listing takes, to fit the deadline."""


def contexts(ctx: typer.Context, incomplete: str) -> list[str]:
    """The contexts of the kubeconfig that ``--kubeconfig`` (typed earlier) or KUBECONFIG
    names; read from the file only, so no deadline is needed."""
    from pulltrace.kube.config import context_names

    kubeconfig = ctx.params.get("kubeconfig")
    try:
        names = context_names(kubeconfig if isinstance(kubeconfig, str) else None)
    except Exception:  # a completion never fails out loud
        return []
    return _matching(names, incomplete)


def namespaces(ctx: typer.Context, incomplete: str) -> list[str]:
    """Namespaces of the pods that the source's pulls are for."""
    return _from_source(ctx, incomplete, _namespaces)


def nodes(ctx: typer.Context, incomplete: str) -> list[str]:
    """Nodes with pulls, and for a collector every node with an agent."""
    return _from_source(ctx, incomplete, _nodes)


def _from_source(
    ctx: typer.Context, incomplete: str, pick: Callable[[dict[str, object]], Iterable[str]]
) -> list[str]:
    """Runs ``pick`` in a daemon thread and waits at most ``DEADLINE``: the sources' own
    timeouts are sized for commands (seconds), and the process exits with the thread still
    blocked when the deadline passes."""
    params = dict(ctx.params)
    found: list[list[str]] = []

    def work() -> None:
        try:
            found.append(list(pick(params)))
        except BaseException:  # no suggestions, never a traceback
            return

    thread = threading.Thread(target=work, name="pulltrace-complete", daemon=True)
    thread.start()
    thread.join(DEADLINE)
    return _matching(found[0] if found else [], incomplete)


if TYPE_CHECKING:
    from pulltrace.client.source import Snapshot


def _matching(names: Iterable[str], incomplete: str) -> list[str]:
    return sorted({n for n in names if n.startswith(incomplete) and n.isprintable()})


def _snapshot(params: dict[str, object]) -> Snapshot:
    """What the chosen source holds now, through its one-shot listing."""
    from pulltrace.cli.params import plan_for

    return plan_for(params).source([], sample=SAMPLE).list_once()


def _namespaces(params: dict[str, object]) -> Iterable[str]:
    return (pod.namespace for pull in _snapshot(params).pulls for pod in pull.pods)


def _nodes(params: dict[str, object]) -> Iterable[str]:
    snapshot = _snapshot(params)
    return [p.node_name for p in snapshot.pulls] + [n.node_name for n in snapshot.nodes or []]
