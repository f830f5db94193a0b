"""Every error pulltrace reports to a user, and the exit code each command gives for it.

Each error's message is already the one line the user reads: the command line catches
``PulltraceError`` once, in ``pulltrace.cli.main``, prints ``pulltrace: <message>`` and exits
with ``exit_code(command)``; no code in between re-wraps one of these errors in another.
Exceptions that are control flow inside one module stay private there (``_TooLarge``,
``_NotFound``) or never leave it (the collector's ``StreamUnavailable``).

The tree (each class is defined next to the code that raises it)::

    PulltraceError
     ├── UsageError                 a flag, environment or configuration value is wrong
     │    ├── ParseError            pulltrace.parse: a duration that does not parse
     │    └── ConfigError           pulltrace.listen: a bad address or a port that cannot be
     │                              bound; pulltrace.collector.config: a namespace, duration
     ├── SourceError                a data source cannot be reached or read
     │    ├── ContainerdError       pulltrace.agent.containerd: the socket, or a refused call
     │    ├── CollectorError        pulltrace.client.endpoint: no (usable) answer from a collector
     │    ├── KubeConfigError       pulltrace.kube.config: a kubeconfig that cannot be loaded
     │    ├── KubeApiError          pulltrace.kube.api: the API server refused or is not there
     │    ├── ResolveError          pulltrace.client.connect: the flags lead to no usable source
     │    ├── ListingError          pulltrace.client.kubeapi: pods and events not listed in time
     │    └── HistoryError          pulltrace.collector.history: the history database cannot be
     │                              opened or migrated
     └── InvalidReference           pulltrace.kube.refs: an image reference containerd refuses

``ParseError``, ``ConfigError`` and ``InvalidReference`` are also ``ValueError``s: they are what
a bad value is, and callers that only ask "is this value usable" catch ``ValueError``.
"""

from __future__ import annotations

EXIT_PULLED = 0
"""wait: every selected image is on its node."""
EXIT_FAILED = 1
"""wait: a pull failed."""
EXIT_TIMEOUT = 2
"""wait: timed out."""
EXIT_WAIT_ERROR = 3
"""wait: a usage or source error (1 and 2 are taken by the outcomes a pipeline acts on)."""
EXIT_ERROR = 2
"""Every other command: a usage or source error, one code for both as kubectl does, and the
code argparse exits with on a bad flag."""
EXIT_INTERRUPTED = 130
"""Ctrl-C, as a shell reports a SIGINT."""


def exit_code(command: str | None) -> int:
    """The exit code of a ``PulltraceError`` (or a bad flag) for ``command``."""
    return EXIT_WAIT_ERROR if command == "wait" else EXIT_ERROR


class PulltraceError(Exception):
    """The root: an error whose message is one line for the user, raised anywhere in the
    package and reported once by the command line."""


class UsageError(PulltraceError):
    """A bad flag, environment or configuration value: the user has to change the command."""


class SourceError(PulltraceError):
    """A data source (containerd, a collector, the Kubernetes API, a kubeconfig) cannot be
    reached or read: the command is right, the world around it is not (yet)."""
