"""Parsing shared by the command line and the roles it starts: a leaf module (standard library
only) so that ``pulltrace.collector`` can read a duration without importing ``pulltrace.cli``."""

from __future__ import annotations

import re

from pulltrace.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ParseError(UsageError, ValueError):
    """Raised by ``duration`` for a value that does not parse; the message is one line the
    caller prefixes with its source (a flag or an environment variable)."""


def duration(text: str) -> float:
    """Seconds from ``1``, ``1.5s``, ``500ms``, ``10m`` or ``1h``, as Kubernetes tools accept."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ParseError(f"invalid duration {text!r} (e.g. 1s, 500ms, 2m)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
