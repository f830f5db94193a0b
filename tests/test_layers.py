"""The layers of the package, checked on its source: data flows containerd -> agent -> collector
-> client -> TUI/CLI, and an import that runs the other way is a failure naming the file, the
line and the rule it breaks.

Every module is parsed with ``ast`` (nothing is imported, so a lazy import inside a function or
under ``TYPE_CHECKING`` counts like one at the top), relative imports are resolved against the
module's package, and ``importlib.import_module``/``__import__`` with a literal name count too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "pulltrace"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Rule:
    name: str
    importers: tuple[str, ...]
    """Modules the rule applies to: each one and everything under it."""
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()
    """Exceptions inside ``forbidden``, each one and everything under it."""
    exempt: tuple[str, ...] = ()
    """Importers inside ``importers`` the rule does not apply to."""


_FRONT_ENDS = ("pulltrace.client", "pulltrace.tui", "pulltrace.commands")
"""The command line is left to the last rule, which forbids it everywhere."""
RULES = (
    Rule(
        "client, tui and commands never import the collector's internals",
        importers=_FRONT_ENDS,
        forbidden=("pulltrace.collector",),
    ),
    Rule(
        "the command line starts the collector role (its config and run) and nothing more of it",
        importers=("pulltrace.cli",),
        forbidden=("pulltrace.collector",),
        allowed=("pulltrace.collector.config", "pulltrace.collector.server"),
    ),
    Rule(
        "the collector never imports the clients, the TUI or the commands",
        importers=("pulltrace.collector",),
        forbidden=_FRONT_ENDS,
    ),
    Rule(
        "the agent role never imports the collector or a front end",
        importers=("pulltrace.agent",),
        forbidden=("pulltrace.collector", *_FRONT_ENDS),
    ),
    Rule(
        "the shared cores (model, parsing, merge store, kube) import no role or front end",
        importers=(
            "pulltrace.model",
            "pulltrace.parse",
            "pulltrace.rate",
            "pulltrace.rollup",
            "pulltrace.render",
            "pulltrace.listen",
            "pulltrace.pullstore",
            "pulltrace.kube",
        ),
        forbidden=("pulltrace.collector", *_FRONT_ENDS),
    ),
    Rule(
        "all Kubernetes API access is in pulltrace.kube",
        importers=(PACKAGE,),
        forbidden=("kubernetes",),
        exempt=("pulltrace.kube",),
    ),
    Rule(
        "nothing imports the command line: it is the entry point",
        importers=(PACKAGE,),
        forbidden=("pulltrace.cli",),
        exempt=("pulltrace.cli",),
    ),
)


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    importer: str
    target: str


@dataclass(frozen=True)
class Violation:
    where: Import
    rule: Rule

    def __str__(self) -> str:
        w = self.where
        return f"{w.path}:{w.line}: {w.importer} imports {w.target} ({self.rule.name})"


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(root: Path, name: str) -> bool:
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _targets(root: Path, node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """The modules one statement imports: for ``from X import a`` that is ``X.a`` when it is a
    module of the tree (``from pulltrace import cli``), else ``X``."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            anchor = package[: len(package) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        names = [f"{base}.{alias.name}" for alias in node.names]
        modules = [name for name in names if _is_module(root, name)]
        yield from modules
        if len(modules) < len(names):
            yield base
    elif isinstance(node, ast.Call) and node.args:
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        first = node.args[0]
        name = first.value if isinstance(first, ast.Constant) else None
        if called in ("import_module", "__import__") and isinstance(name, str):
            yield name


def imports(root: Path, package: str = PACKAGE) -> Iterator[Import]:
    """Every import in every module of ``package`` under ``root``, lazy ones included."""
    for path in sorted((root / package).rglob("*.py")):
        module = module_name(root, path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            for target in _targets(root, node, module, path.name == "__init__.py"):
                yield Import(path.relative_to(root), getattr(node, "lineno", 0), module, target)


def violations(root: Path, rules: tuple[Rule, ...] = RULES) -> list[Violation]:
    found = []
    for imp in imports(root):
        for rule in rules:
            if (
                _under(imp.importer, rule.importers)
                and not _under(imp.importer, rule.exempt)
                and _under(imp.target, rule.forbidden)
                and not _under(imp.target, rule.allowed)
            ):
                found.append(Violation(imp, rule))
    return found


def test_the_package_keeps_its_layers() -> None:
    found = violations(ROOT)
    assert not found, "imports against the layers:\n" + "\n".join(map(str, found))


def test_the_scan_sees_the_package() -> None:
    """A scan that found no imports at all would pass the test above for nothing."""
    seen = {(i.importer, i.target) for i in imports(ROOT)}
    assert ("pulltrace.client.demo", "pulltrace.pullstore") in seen  # lazy, inside a method
    assert ("pulltrace.cli.app", "pulltrace.collector.server") in seen


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"pulltrace/__init__.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text, encoding="utf-8")
    return tmp_path


LAZY_CLIENT = "import os\n\n\ndef go():\n    from ..collector import store\n"
"""A lazy, relative import of a module: the way the demo once reached the collector's store."""


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"pulltrace/client/demo.py": LAZY_CLIENT, "pulltrace/collector/store.py": ""},
            "pulltrace/client/demo.py:5: pulltrace.client.demo imports pulltrace.collector.store "
            "(client, tui and commands never import the collector's internals)",
        ),
        (
            {"pulltrace/collector/config.py": "from pulltrace.cli import duration\n"},
            "pulltrace/collector/config.py:1: pulltrace.collector.config imports pulltrace.cli "
            "(nothing imports the command line: it is the entry point)",
        ),
        (
            {"pulltrace/collector/app.py": "from ..client.store import ClientStore\n"},
            "pulltrace/collector/app.py:1: pulltrace.collector.app imports pulltrace.client.store "
            "(the collector never imports the clients, the TUI or the commands)",
        ),
        (
            {"pulltrace/pullstore.py": "from .collector import asgi\n"},
            "pulltrace/pullstore.py:1: pulltrace.pullstore imports pulltrace.collector "
            "(the shared cores (model, parsing, merge store, kube) import no role or front end)",
        ),
        (
            {"pulltrace/agent/daemon.py": "from pulltrace import cli\n", "pulltrace/cli.py": ""},
            "pulltrace/agent/daemon.py:1: pulltrace.agent.daemon imports pulltrace.cli "
            "(nothing imports the command line: it is the entry point)",
        ),
        (
            {"pulltrace/cli.py": "def f():\n    import pulltrace.collector.store\n"},
            "pulltrace/cli.py:2: pulltrace.cli imports pulltrace.collector.store "
            "(the command line starts the collector role (its config and run) and nothing more "
            "of it)",
        ),
        (
            {"pulltrace/tui/__init__.py": "from . import app\n", "pulltrace/tui/app.py": ""},
            None,
        ),
        (
            {"pulltrace/commands/wait.py": "def pods():\n    from kubernetes import client\n"},
            "pulltrace/commands/wait.py:2: pulltrace.commands.wait imports kubernetes "
            "(all Kubernetes API access is in pulltrace.kube)",
        ),
        (
            {
                "pulltrace/commands/wait.py": "import importlib\n"
                "importlib.import_module('pulltrace.collector.app')\n"
            },
            "pulltrace/commands/wait.py:2: pulltrace.commands.wait imports pulltrace.collector.app "
            "(client, tui and commands never import the collector's internals)",
        ),
    ],
)
def test_a_backward_import_fails_with_file_line_and_rule(
    tmp_path: Path, files: dict[str, str], expected: str | None
) -> None:
    found = [str(v) for v in violations(_tree(tmp_path, files))]
    assert found == ([expected] if expected else [])


def test_what_the_rules_allow(tmp_path: Path) -> None:
    """The command line may start the collector; the collector may use the shared cores."""
    root = _tree(
        tmp_path,
        {
            "pulltrace/cli.py": "def f():\n    from pulltrace.collector.server import run\n",
            "pulltrace/collector/app.py": "from ..pullstore import PullStore\n"
            "from pulltrace.parse import duration\n",
            "pulltrace/client/demo.py": "from pulltrace.pullstore import PullStore\n",
        },
    )
    assert violations(root) == []
