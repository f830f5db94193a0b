"""From flag values to what the commands run on: the source's plan and the listing's query.

Shared by Typer's commands (``app``) and the fast ``ls`` path (``quick``), so it imports
neither Typer nor anything heavy at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pulltrace.client.connect import Plan, SourceArgs
    from pulltrace.client.store import Query


def query_for(
    namespace: str | None, all_namespaces: bool, node: str | None, phase: str, text: str
) -> Query:
    from pulltrace.client.store import Query

    phases = frozenset(p for p in phase.split(",") if p)
    chosen = "" if all_namespaces else namespace or ""
    return Query(text=text, node=node or "", namespace=chosen, phases=phases)


def source_args(params: dict[str, object]) -> SourceArgs:
    """The source flags out of a command's parameters (its ``locals()`` or a completion
    context's ``params``); absent ones keep ``SourceArgs``' defaults."""
    from pulltrace.client.connect import SourceArgs

    fields = set(SourceArgs.__struct_fields__)
    given = {k: v for k, v in params.items() if k in fields and v is not None}
    return SourceArgs(**given)  # type: ignore[arg-type]


def plan_for(params: dict[str, object]) -> Plan:
    """Resolves the source; raises a SourceError with one line for the user."""
    from pulltrace.client.connect import resolve

    return resolve(source_args(params))
