"""The images' Dockerfiles read as data, and their build stage replayed without Docker.

There is no Docker engine where the tests run, so ``replay`` does what the build stage does with
the same inputs: it lays out the context the way ``COPY`` would (through ``.dockerignore``) and
runs the stage's own ``pip install`` lines, with the venv instead of ``--prefix=/install``.
A Dockerfile line this module does not know how to replay is an error, never skipped, so the
venv the tests run cannot quietly differ from the image.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("agent", "collector")
PREFIX = "/install"
"""Where the build stage installs; the final stage copies it to /usr/local."""


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def json_args(self) -> list[str]:
        """ENTRYPOINT/CMD in exec form; the shell form is refused."""
        value = json.loads(self.args)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{self.keyword} must be a JSON list of strings: {self.args}")
        return value


@dataclass
class Stage:
    image: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def pip_installs(self) -> list[list[str]]:
        """Each ``RUN pip install …`` as argv after ``pip install``; any other RUN is refused."""
        commands = []
        for run in self.all("RUN"):
            argv = shlex.split(run.args)
            if argv[:2] != ["pip", "install"]:
                raise ValueError(f"RUN other than pip install cannot be replayed: {run.args}")
            commands.append(argv[2:])
        return commands


@dataclass
class Dockerfile:
    path: Path
    stages: list[Stage]

    @property
    def build(self) -> Stage:
        return self.stages[0]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def parse(path: Path) -> Dockerfile:
    """Instructions by stage; comments dropped, ``\\`` continuations joined."""
    stages: list[Stage] = []
    pending = ""
    for raw in path.read_text().splitlines():
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line, pending = pending + raw, ""
        keyword, _, args = line.strip().partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            image, _, name = args.partition(" AS ")
            stages.append(Stage(image=image.strip(), name=name.strip()))
        elif not stages:
            raise ValueError(f"{path}: {keyword} before the first FROM")
        else:
            stages[-1].instructions.append(Instruction(keyword, args))
    if pending:
        raise ValueError(f"{path}: ends inside a continued line")
    return Dockerfile(path, stages)


def role_dockerfile(role: str) -> Dockerfile:
    return parse(ROOT / role / "Dockerfile")


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """One .dockerignore pattern (Go filepath.Match plus ``**``) as a regex on a relative path."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            if pattern.startswith("/", i):
                out[-1] = "(?:.*/)?"
                i += 1
            continue
        char = pattern[i]
        end = pattern.find("]", i + 1)
        if char == "[" and end > 0:
            body = pattern[i + 1 : end]
            negated = body[:1] in ("!", "^")
            out.append(("[^/" if negated else "[") + body[negated:].replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        out.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
        i += 1
    return re.compile("".join(out))


class DockerIgnore:
    """Docker's rules: the last pattern that matches a path or one of its parents decides,
    ``!`` re-includes, and a path no pattern matches is sent."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        self.includes: list[str] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            cleaned = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            self.rules.append((include, _pattern_regex(cleaned)))
            if include:
                self.includes.append(cleaned)

    @classmethod
    def of_repo(cls) -> DockerIgnore:
        return cls((ROOT / ".dockerignore").read_text())

    def ignored(self, relative: str) -> bool:
        parts = PurePosixPath(relative).parts
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        verdict = False
        for include, regex in self.rules:
            if any(regex.fullmatch(p) for p in prefixes):
                verdict = not include
        return verdict

    def _may_include_below(self, directory: str) -> bool:
        """Whether a ``!`` rule could re-include something under an ignored directory."""
        return any(p.startswith(directory + "/") or "*" in p for p in self.includes)

    def context_files(self, under: str = "") -> list[str]:
        """Every file the build context would hold (below ``under``), relative to the root."""
        found = []
        for current, dirs, files in os.walk(ROOT / under):
            base = Path(current).relative_to(ROOT).as_posix()
            prefix = "" if base == "." else base + "/"
            dirs[:] = sorted(
                d
                for d in dirs
                if not self.ignored(prefix + d) or self._may_include_below(prefix + d)
            )
            found += [prefix + f for f in sorted(files) if not self.ignored(prefix + f)]
        return sorted(found)


def _copy(stage_root: Path, workdir: PurePosixPath, args: str, ignore: DockerIgnore) -> None:
    """COPY from the repository context, with Docker's rules for where each source lands."""
    *sources, dest = shlex.split(args)
    if any(s.startswith("--") for s in sources):
        raise ValueError(f"COPY flags cannot be replayed in the build stage: {args}")
    target = stage_root / str(workdir / dest).lstrip("/")
    into_dir = dest.endswith("/") or len(sources) > 1
    for source in sources:
        path = ROOT / source
        if ignore.ignored(source) or not path.exists():
            raise FileNotFoundError(f"COPY {source}: not in the build context")
        if path.is_dir():
            inside = source.rstrip("/") + "/"
            for relative in ignore.context_files(inside):
                out = target / relative.removeprefix(inside)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / relative, out)
        else:
            out = target / path.name if into_dir else target
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out)


def pip_env() -> dict[str, str]:
    """pip as in the image build: no pip configuration file, no PIP_* variable, no cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env.pop("VIRTUAL_ENV", None)
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def replay(
    dockerfile: Dockerfile, stage_root: Path, pip: list[str], prefix: Path | None = None
) -> list[list[str]]:
    """Runs the build stage with ``pip`` (a command list, e.g. a venv's ``python -m pip``) and
    returns the commands it ran. ``--prefix=/install`` becomes ``--prefix=<prefix>``, or is
    dropped when ``prefix`` is None so that pip installs into its own environment."""
    workdir = PurePosixPath("/")
    ignore = DockerIgnore.of_repo()
    ran = []
    for instruction in dockerfile.build.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = workdir / instruction.args
            (stage_root / str(workdir).lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            _copy(stage_root, workdir, instruction.args, ignore)
        elif instruction.keyword == "RUN":
            (argv,) = Stage("", "", [instruction]).pip_installs()
            into = [] if prefix is None else [f"--prefix={prefix}"]
            argv = [b for a in argv for b in (into if a == f"--prefix={PREFIX}" else [a])]
            command = [*pip, "install", *argv]
            cwd = stage_root / str(workdir).lstrip("/")
            subprocess.run(command, cwd=cwd, env=pip_env(), check=True, timeout=900)
            ran.append(command)
        else:
            raise ValueError(f"{instruction.keyword} in the build stage cannot be replayed")
    return ran
