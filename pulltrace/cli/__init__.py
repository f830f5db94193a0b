"""The ``pulltrace`` command line, on Typer (commands and flags in ``pulltrace.cli.app``).

``main`` is the one place where errors become a line and an exit code: Typer runs outside its
standalone mode, so a bad flag is reported as ``pulltrace <command>: <message>`` with the
command's usage exit code (3 for ``wait``, whose 1 and 2 mean "failed" and "timed out"),
instead of Typer's multi-line usage box with its fixed code 2.

A plain ``ls`` listing skips Typer (``pulltrace.cli.quick`` says why and how it stays the same).

Start-up makes about a hundred thousand objects (modules, classes, Typer's and msgspec's type
information) and no garbage, so the cyclic garbage collector is off while the command line is
read and the modules load, and back on before a command runs (a listing is bounded and makes no
cycles, so ``ls`` keeps it off). When ``main`` is the process (``argv`` None: the console script
and ``python -m pulltrace.cli``), every object is frozen on the way out, so that the collection
Python runs at exit does not walk them all only to free nothing. In one interleaved run (40
each, medians of CPU time, load 5 on 2 cores) this took ``ls --json`` from 57 to 47 ms and
``--version`` from 54 to 47 ms; ``kubectl version --client`` took 40 ms.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence

from pulltrace.errors import EXIT_ERROR, EXIT_INTERRUPTED, PulltraceError, exit_code


def main(argv: Sequence[str] | None = None) -> int:
    from pulltrace.cli import quick

    collecting = gc.isenabled()
    gc.disable()
    words = list(sys.argv[1:] if argv is None else argv)
    # The root takes no option with a value, so the first word that is no flag is the command.
    command = next((w for w in words if w[:1] != "-"), "")
    try:
        params = quick.ls_params(words)
        return _typer(words, command, collecting) if params is None else quick.ls(params)
    except PulltraceError as err:  # the one place our errors become a line and an exit code
        from pulltrace.render import message_text  # a peer's words may be in it

        print(f"pulltrace: {message_text(str(err))}", file=sys.stderr)
        return exit_code(command)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        if collecting:
            gc.enable()
        if argv is None:
            gc.freeze()


def _typer(words: list[str], command: str, collecting: bool) -> int:
    import typer

    from pulltrace.cli.app import app

    if collecting:
        gc.enable()
    try:
        result = typer.main.get_command(app).main(
            args=words, prog_name="pulltrace", standalone_mode=False
        )
    except typer.TyperException as err:  # a bad flag or argument (Click's UsageError tree)
        where = f"pulltrace {command}" if command in app_commands() else "pulltrace"
        print(f"{where}: {_one_line(err.format_message())}", file=sys.stderr)
        return exit_code(command) if err.exit_code == EXIT_ERROR else err.exit_code
    except typer.Abort:
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else 0


def app_commands() -> set[str]:
    """The subcommand names, as Typer derives them from the command functions."""
    from pulltrace.cli.app import declared

    return set(declared())


def _one_line(message: str) -> str:
    return " ".join(message.split())
