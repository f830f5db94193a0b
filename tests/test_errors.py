"""The error tree: every public exception in the package is rooted at PulltraceError (so the
command line's one ``except`` reports it as one line), and errors.py's drawing names them all."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

from pulltrace import errors

PACKAGE = Path(errors.__file__).resolve().parent

INTERNAL = {
    "pulltrace.collector.broker.StreamUnavailable": "the collector's HTTP handler turns it into "
    "a 503 itself; it never reaches a command",
    "pulltrace.pullstore.InvalidReport": "the report ingest turns it into a 400 itself; the "
    "store raises it before changing anything",
    "pulltrace.pullstore.StoreFull": "the report ingest turns it into a 429 itself; it never "
    "reaches a command",
}
"""Public-named exceptions that are control flow inside one module, each with why."""


def exception_classes(root: Path, package: str) -> dict[str, type[BaseException]]:
    """Every class defined at the top level of a module under ``root`` that is an exception,
    by dotted name: found with ast (so no module is missed), judged by importing it."""
    found: dict[str, type[BaseException]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        module = (
            ".".join((package, *parts[:-1]))
            if parts[-1] == "__init__"
            else ".".join((package, *parts))
        )
        classes = [n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef)]
        if not classes:
            continue
        loaded = importlib.import_module(module)
        for name in classes:
            obj = getattr(loaded, name)
            if isinstance(obj, type) and issubclass(obj, BaseException):
                found[f"{module}.{name}"] = obj
    return found


def unrooted(root: Path, package: str, internal: dict[str, str]) -> list[str]:
    """Public exception classes that are not PulltraceErrors and not declared internal."""
    return sorted(
        name
        for name, cls in exception_classes(root, package).items()
        if not name.rpartition(".")[2].startswith("_")
        and name not in internal
        and not issubclass(cls, errors.PulltraceError)
    )


def test_every_public_error_is_a_pulltrace_error() -> None:
    assert unrooted(PACKAGE, "pulltrace", INTERNAL) == []


def test_the_internal_list_names_classes_that_exist() -> None:
    assert set(INTERNAL) <= set(exception_classes(PACKAGE, "pulltrace"))


def test_a_new_unrooted_class_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "synthetic"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "mod.py").write_text(
        "from pulltrace.errors import SourceError\n"
        "class Rooted(SourceError): pass\n"
        "class Stray(Exception): pass\n"
        "class _Private(Exception): pass\n"
        "class NotAnError: pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert unrooted(pkg, "synthetic", {}) == ["synthetic.sub.mod.Stray"]
        assert unrooted(pkg, "synthetic", {"synthetic.sub.mod.Stray": "why"}) == []
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "synthetic"]:
            del sys.modules[name]


def test_the_docstring_draws_every_public_error() -> None:
    drawn = {
        line.split()[-1] if "──" not in line else line.split("──", 1)[1].split()[0]
        for line in (errors.__doc__ or "").splitlines()
        if "──" in line or line.strip() == "PulltraceError"
    }
    public = {
        name.rpartition(".")[2]
        for name, cls in exception_classes(PACKAGE, "pulltrace").items()
        if issubclass(cls, errors.PulltraceError) and not name.rpartition(".")[2].startswith("_")
    }
    assert drawn == public


def test_each_branch_is_where_its_code_says() -> None:
    from pulltrace.agent.containerd import ContainerdError
    from pulltrace.client.connect import ResolveError
    from pulltrace.client.endpoint import CollectorError
    from pulltrace.client.kubeapi import ListingError
    from pulltrace.kube.api import KubeApiError
    from pulltrace.kube.config import KubeConfigError
    from pulltrace.kube.refs import InvalidReference
    from pulltrace.listen import ConfigError
    from pulltrace.parse import ParseError

    for usage in (ParseError, ConfigError):
        assert issubclass(usage, errors.UsageError) and issubclass(usage, ValueError)
    for source in (
        ContainerdError,
        CollectorError,
        KubeConfigError,
        KubeApiError,
        ResolveError,
        ListingError,
    ):
        assert issubclass(source, errors.SourceError)
    assert issubclass(InvalidReference, ValueError)


@pytest.mark.parametrize(
    ("command", "code"),
    [("ls", 2), ("watch", 2), ("agent", 2), ("collector", 2), ("wait", 3), (None, 2)],
)
def test_exit_codes(command: str | None, code: int) -> None:
    assert errors.exit_code(command) == code
