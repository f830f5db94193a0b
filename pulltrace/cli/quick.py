"""``pulltrace ls`` without Typer, for the plain command lines scripts and people type most.

Typer costs ``ls`` almost as much start-up time as all of ``kubectl version --client``: its
import with the vendored Click and the standard modules only it needs, then building and
parsing the ``ls`` command, were 27 ms of the 84 ms of CPU that ``ls --json`` took against a
loopback collector (kubectl: 40 ms; one interleaved run of bench/startup.py's commands). So
``main`` first offers the words to ``ls_params``, which accepts only what it can read exactly as
Typer would: the ``ls`` flags in their long ``--flag value`` and ``--flag=value`` forms and
``-n``, ``-o`` and ``-A`` as separate words, with values that need no guessing. Anything else
(``--help``, ``--watch``, a bad or unknown flag, a value that starts with ``-``, bundled short
flags, shell completion) returns None and goes to Typer, so every error, message and exit code
is still Typer's. tests/test_cli_quick.py checks the table below against the flags Typer builds
for ``ls`` and that both read the same values from the same words.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Sequence

COMPLETE_VAR = "_PULLTRACE_COMPLETE"
"""Set by the shell completion scripts: Typer answers those."""
CONTAINERD_NAMESPACE_ENV = "PULLTRACE_CONTAINERD_NAMESPACE"
"""``--containerd-namespace``'s environment variable (Click ignores it when empty)."""
FORMATS = ("table", "wide", "json")

DEFAULTS: dict[str, object] = {
    "server": "",
    "token": "",
    "kubeconfig": None,
    "context": None,
    "collector_namespace": "pulltrace",
    "collector_service": "pulltrace-collector",
    "containerd": None,
    "containerd_namespace": "k8s.io",
    "demo": False,
    "seed": 7,
    "namespace": None,
    "all_namespaces": False,
    "node": None,
    "phase": "",
    "image": "",
    "output": "table",
    "json": False,
    "watch": False,
    "sample": 1.0,
}
"""``ls``'s parameters and their defaults, as Typer declares them in ``pulltrace.cli.app``."""

FLAGS = {"--demo": "demo", "-A": "all_namespaces", "--all-namespaces": "all_namespaces"}
FLAGS["--json"] = "json"
"""Options without a value (``--watch`` runs an event loop and is left to Typer)."""

VALUES = {f"--{name.replace('_', '-')}": name for name in DEFAULTS if name not in FLAGS.values()}
VALUES |= {"-n": "namespace", "-o": "output"}
del VALUES["--watch"]
"""Options with a value, by every name Typer gives them."""


def _seed(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def _output(text: str) -> str | None:
    return text if text in FORMATS else None


def _sample(text: str) -> float | None:
    from pulltrace import parse

    try:
        return parse.duration(text)
    except parse.ParseError:
        return None


CONVERT: dict[str, Callable[[str], object]] = {"seed": _seed, "output": _output, "sample": _sample}
"""Values that are not plain strings; None from one means "let Typer say what is wrong"."""


def ls_params(words: Sequence[str]) -> dict[str, object] | None:
    """``ls``'s parameters from ``words`` (the whole argv after the program name), or None
    when they are not a plain ``ls`` listing that this module reads exactly as Typer does."""
    if words[:1] != ["ls"] or COMPLETE_VAR in os.environ:
        return None
    params = dict(DEFAULTS)
    params["containerd_namespace"] = os.environ.get(CONTAINERD_NAMESPACE_ENV) or "k8s.io"
    rest = list(words[1:])
    while rest:
        word = rest.pop(0)
        name, equals, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if not equals and name in FLAGS:
            params[FLAGS[name]] = True
            continue
        key = VALUES.get(name)
        if key is None or not (equals or rest):
            return None
        if not equals:
            value = rest.pop(0)
        if value.startswith("-"):
            return None
        converted = CONVERT[key](value) if key in CONVERT else value
        if converted is None:
            return None
        params[key] = converted
    return params


def ls(params: dict[str, object]) -> int:
    """What Typer's ``ls`` command does for a listing, with the handling Typer's ``main`` gives
    a broken pipe: exit code 1, and no complaint when Python flushes stdout at exit."""
    from pulltrace.cli.params import plan_for, query_for
    from pulltrace.commands.ls import print_listing

    plan = plan_for(params)
    query = query_for(
        params["namespace"],  # type: ignore[arg-type]
        bool(params["all_namespaces"]),
        params["node"],  # type: ignore[arg-type]
        str(params["phase"]),
        str(params["image"]),
    )
    fmt = "json" if params["json"] else str(params["output"])
    try:
        print_listing(plan, query, fmt, float(params["sample"]))  # type: ignore[arg-type]
    except OSError as err:
        if err.errno != errno.EPIPE:
            raise
        from typer._click.utils import PacifyFlushWrapper

        sys.stdout = PacifyFlushWrapper(sys.stdout)
        sys.stderr = PacifyFlushWrapper(sys.stderr)
        sys.exit(1)
    return 0
