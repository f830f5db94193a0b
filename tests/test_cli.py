"""Bad input gets one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pulltrace.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("pulltrace ")


@pytest.mark.parametrize("fmt", [["--json"], ["-o", "wide"], []])
def test_missing_socket_is_one_line_and_exit_2(fmt: list[str]) -> None:
    out = run("ls", "--containerd", "/nonexistent/containerd.sock", *fmt)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "pulltrace: containerd unreachable at /nonexistent/containerd.sock: "
        "no such socket (is containerd running?)"
    ]


def test_socket_that_is_not_containerd(tmp_path: object) -> None:
    out = run("ls", "--containerd", "unix:///dev/null", "--sample", "10ms")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


def test_agent_without_server_is_a_usage_error() -> None:
    out = run("agent", env={"PATH": "/usr/bin"})
    assert out.returncode == 2
    assert "PULLTRACE_SERVER_URL" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "args", [["ls", "--bogus"], ["ls", "--sample", "soon"], ["agent", "--interval", "-1"]]
)
def test_bad_flags_exit_2(args: list[str]) -> None:
    out = run(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("pulltrace")


def test_bad_interval_env_is_a_usage_error() -> None:
    out = run("agent", "--server", "http://127.0.0.1:9", env={"PULLTRACE_REPORT_INTERVAL": "often"})
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "pulltrace: PULLTRACE_REPORT_INTERVAL: invalid duration 'often' (e.g. 1s, 500ms, 2m)"
    )


def test_a_bad_flag_to_wait_is_exit_3_not_timeout() -> None:
    out = run("wait", "--bogus")
    assert out.returncode == 3
    assert "No such option: --bogus" in out.stderr
    assert run("ls", "--bogus").returncode == 2
    assert run("wait", "--help").returncode == 0


def test_containerd_without_the_agent_extra_is_one_line(tmp_path: Path) -> None:
    """The base install has no grpcio: hide it, as ``pip install pulltrace`` would."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['grpc'] = None\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    for args in (["ls", "--containerd", "/x.sock"], ["agent", "--server", "http://c:1"]):
        out = run(*args, env=env)
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip().splitlines() == [
            "pulltrace: reading containerd needs the agent extra: pip install 'pulltrace[agent]'"
        ]


def _no_source_env(tmp_path: Path) -> dict[str, str]:
    """No PULLTRACE_SERVER and a HOME without a kubeconfig: only the flags choose the source."""
    drop = ("PULLTRACE_SERVER", "PULLTRACE_TOKEN", "KUBECONFIG")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "HOME": str(tmp_path)}


MISSING_KUBECONFIG = "/nonexistent/kubeconfig"
REFUSING = "http://127.0.0.1:9"  # the discard port: nothing listens there


@pytest.mark.parametrize(
    ("args", "code", "line"),
    [
        # ls and watch: 2 for usage and source errors alike, as kubectl
        (["ls", "--kubeconfig", MISSING_KUBECONFIG], 2, f"kubeconfig {MISSING_KUBECONFIG}"),
        (["watch", "--kubeconfig", MISSING_KUBECONFIG], 2, f"kubeconfig {MISSING_KUBECONFIG}"),
        (["ls", "--server", REFUSING], 2, "127.0.0.1:9"),
        (["watch", "--bogus"], 2, "No such option: --bogus"),
        # wait: 3, since 1 and 2 say "a pull failed" and "timed out"
        (
            ["wait", "--kubeconfig", MISSING_KUBECONFIG, "web"],
            3,
            f"kubeconfig {MISSING_KUBECONFIG}",
        ),
        (["wait", "--server", REFUSING, "web"], 3, "127.0.0.1:9"),
        (["wait", "--server", REFUSING, "-l", "app=web"], 3, "-l needs cluster access"),
        (["wait", "--demo", "web", "-l", "app=web"], 3, "name pods or give -l, not both"),
        (["wait", "--timeout", "soon"], 3, "invalid duration 'soon'"),
        # the roles: 2 for a bad flag or address
        (["collector", "--listen", "nowhere"], 2, "--listen: invalid address 'nowhere'"),
        (["collector", "--history-ttl", "soon"], 2, "invalid duration 'soon'"),
        (["collector", "--max-pulls", "0"], 2, "--max-pulls: '0' is not a whole number"),
        (["collector", "--database", "mysql://x"], 2, "--database: must be a postgresql:// URL"),
        (["collector", "--history-retention", "1s"], 2, "--history-retention: '1s' is out of"),
        # the history commands: 2, the collector's words in one line
        (["history", "--server", REFUSING], 2, "127.0.0.1:9"),
        (["stats", "--server", REFUSING, "--since", "later"], 2, "--since: 'later' is neither"),
        (["updates", "dismiss", "nginx", "--server", REFUSING], 2, "127.0.0.1:9"),
        (["updates", "--server", REFUSING, "-o", "yaml"], 2, "'yaml' is not one of"),
        (["agent", "--server", "ftp://c"], 2, "--server must be an http:// or https:// URL"),
    ],
)
def test_each_commands_exit_code_for_usage_and_source_errors(
    args: list[str], code: int, line: str, tmp_path: Path
) -> None:
    """The codes README.md documents, each error reported as its one line."""
    out = run(*args, env=_no_source_env(tmp_path))
    assert out.returncode == code, out.stderr
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("pulltrace") and line in last, out.stderr


def test_the_collector_stops_on_a_broken_kubeconfig_with_exit_2(tmp_path: Path) -> None:
    """A source error in a role is its error exit too; the collector never starts serving."""
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: 5\n")
    env = {**_no_source_env(tmp_path), "KUBECONFIG": str(broken)}
    out = run("collector", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", env=env)
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"pulltrace: kubeconfig {broken}: not a kubeconfig ("), line


def test_no_command_prints_the_help_and_exits_2() -> None:
    out = run()
    assert out.returncode == 2
    assert "Usage: pulltrace" in out.stdout and "Traceback" not in out.stderr


def _wide(tmp_path: Path) -> dict[str, str]:
    """Rich wraps help to the terminal; a wide one keeps each panel title on its line."""
    return {**_no_source_env(tmp_path), "COLUMNS": "200", "TERM": "dumb"}


def test_help_lists_the_commands_in_their_panels(tmp_path: Path) -> None:
    out = run("--help", env=_wide(tmp_path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    panels = {line.strip("╭─╮ ") for line in lines if line.startswith("╭─")}
    assert panels == {"Options", "Commands", "In-cluster roles", "Shell"}
    commands = ("ls", "watch", "wait", "history", "stats", "updates", "agent", "collector")
    for word in (*commands, "completion"):
        assert any(line.startswith(f"│ {word} ") for line in lines), word
    for flag in ("--version", "--install-completion", "--show-completion", "--help"):
        assert flag in out.stdout


@pytest.mark.parametrize("command", ["ls", "watch", "wait"])
def test_client_help_groups_the_source_flags(command: str, tmp_path: Path) -> None:
    out = run(command, "-h", env=_wide(tmp_path))
    assert out.returncode == 0, out.stderr
    panels = {line.strip("╭─╮ ") for line in out.stdout.splitlines() if line.startswith("╭─")}
    assert {"Source (default: PULLTRACE_SERVER, else the kubeconfig context)", "containerd"} <= (
        panels
    )
    for flag in ("--server", "--kubeconfig", "--context", "--demo", "--namespace"):
        assert flag in out.stdout, flag


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        (["history"], ("--image", "--node", "--phase", "--since", "--until", "--limit", "-o")),
        (["stats"], ("--by", "--since", "-o")),
        (["updates"], ("--all", "-o", "dismiss")),
        (["updates", "dismiss"], ("IMAGE",)),
    ],
)
def test_history_commands_help_groups_the_source_flags(
    command: list[str], flags: tuple[str, ...], tmp_path: Path
) -> None:
    """They read a collector, never containerd: the source panel without containerd's."""
    out = run(*command, "-h", env=_wide(tmp_path))
    assert out.returncode == 0, out.stderr
    panels = {line.strip("╭─╮ ") for line in out.stdout.splitlines() if line.startswith("╭─")}
    assert "Source (default: PULLTRACE_SERVER, else the kubeconfig context)" in panels
    assert "containerd" not in panels
    for flag in ("--server", "--kubeconfig", "--context", "--demo", *flags):
        assert flag in out.stdout, flag


def test_collector_help_has_the_history_and_limit_flags(tmp_path: Path) -> None:
    out = run("collector", "-h", env=_wide(tmp_path))
    assert out.returncode == 0, out.stderr
    panels = {line.strip("╭─╮ ") for line in out.stdout.splitlines() if line.startswith("╭─")}
    assert {"Limits", "History (default: none; finished pulls live --history-ttl in memory)"} <= (
        panels
    )
    for flag in ("--max-pulls", "--max-nodes", "--data-dir", "--database", "--history-retention"):
        assert flag in out.stdout, flag
    assert "--history-max-pulls" in out.stdout


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--bogus"], 2),
        (["lss"], 2),
        (["ls", "-o", "yaml"], 2),
        (["ls", "--seed", "many"], 2),
        (["ls", "--server"], 2),
        (["wait", "--interval", "0"], 3),
        (["wait", "--seed", "many"], 3),
        (["completion", "tcsh"], 2),
        (["completion"], 2),
    ],
)
def test_bad_argv_is_one_line_with_the_commands_usage_code(args: list[str], code: int) -> None:
    from pulltrace.errors import EXIT_ERROR, EXIT_WAIT_ERROR

    assert code in (EXIT_ERROR, EXIT_WAIT_ERROR)
    out = run(*args)
    assert out.returncode == code, out.stderr
    assert out.stdout == ""
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("pulltrace"), line


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_shells_script(shell: str) -> None:
    out = run("completion", shell)
    assert out.returncode == 0, out.stderr
    assert "pulltrace" in out.stdout and "_PULLTRACE_COMPLETE" in out.stdout
    if shell == "bash":
        assert "complete " in out.stdout and "COMP_WORDS" in out.stdout


def test_the_bash_script_is_valid_bash(tmp_path: Path) -> None:
    script = tmp_path / "pulltrace.bash"
    script.write_text(run("completion", "bash").stdout)
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def complete(words: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """What bash gets when the user presses tab after ``words`` (the last word is completed)."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    return run(
        env={
            **env,
            "_PULLTRACE_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(cword),
        }
    )


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: u, user: {}}]
contexts:
- {name: prod-east, context: {cluster: c, user: u}}
- {name: prod-west, context: {cluster: c, user: u}}
- {name: staging, context: {cluster: c, user: u, namespace: shop}}
current-context: staging
"""


@pytest.mark.parametrize("command", ["ls", "watch", "wait"])
def test_context_completes_from_the_kubeconfig_flag(command: str, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(KUBECONFIG)
    out = complete(
        f"pulltrace {command} --kubeconfig {config} --context prod-", _no_source_env(tmp_path)
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["prod-east", "prod-west"]


def test_context_completes_from_the_kubeconfig_path_list(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(KUBECONFIG)
    other = tmp_path / "other"
    other.write_text("contexts: [{name: lab, context: {}}]\n")
    env = {**_no_source_env(tmp_path), "KUBECONFIG": f"/nonexistent:{config}:{other}"}
    out = complete("pulltrace ls --context ", env)
    assert out.stdout.split() == ["lab", "prod-east", "prod-west", "staging"], out.stderr


@pytest.mark.parametrize("document", ["", "[", "contexts: 5", "contexts: [{name: [1]}]", "\0"])
def test_a_broken_kubeconfig_completes_to_nothing(document: str, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(document)
    out = complete(f"pulltrace ls --kubeconfig {config} --context ", _no_source_env(tmp_path))
    assert out.returncode == 0 and out.stdout.split() == [] and out.stderr == ""


def test_node_and_namespace_suggestions_come_from_the_chosen_source() -> None:
    """What the completers offer once the source has answered (here the demo, whose warm-up
    takes about the completion deadline, so it is asked without one): its nodes, and the
    namespaces of the pods its pulls are for."""
    from pulltrace.cli import complete
    from pulltrace.cli.app import plan_for

    params: dict[str, object] = {"demo": True, "seed": 3}
    snapshot = plan_for(params).source([]).list_once()
    pulls = snapshot.pulls
    nodes = {p.node_name for p in pulls} | {n.node_name for n in snapshot.nodes or []}
    assert pulls and set(complete._nodes(params)) == nodes
    namespaces = {pod.namespace for p in pulls for pod in p.pods}
    assert namespaces and set(complete._namespaces(params)) == namespaces


SILENT_DEADLINE = 5.0
"""Well under the REST client's own 10 s timeout: a completion that waited for the client
instead of its 1 s deadline runs into this."""


@pytest.mark.parametrize("flag", ["--node", "-n"])
def test_completion_against_a_silent_server_is_nothing(flag: str, tmp_path: Path) -> None:
    """A collector that accepts and never answers: no suggestions, no error, no traceback, and
    back to the prompt at the completion's deadline rather than the client's timeout."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        words = f"pulltrace ls --server http://127.0.0.1:{port} {flag} "
        env = {**_no_source_env(tmp_path), "_PULLTRACE_COMPLETE": "complete_bash"}
        env |= {"COMP_WORDS": words, "COMP_CWORD": "5"}
        out = subprocess.run(
            [sys.executable, "-m", "pulltrace.cli"],
            capture_output=True,
            text=True,
            timeout=SILENT_DEADLINE,
            env=env,
        )
    assert out.returncode == 0
    assert out.stdout.split() == [] and out.stderr == ""


@pytest.mark.parametrize("server", [REFUSING, "http://[::1", "ftp://x", "http://x\x1b[2J"])
def test_node_completion_against_a_bad_server_is_nothing(server: str, tmp_path: Path) -> None:
    out = complete(f"pulltrace ls --server {server} --node ", _no_source_env(tmp_path))
    assert out.returncode == 0
    assert out.stdout.split() == [] and out.stderr == ""


LS_FLAGS = ["-o", "--output", "--json", "--phase", "--image", "--sample", "-n", "-A", "--node"]
LS_FLAGS += ["--seed", "--token", "--context", "--collector-namespace", "-h", "--version", "--"]


@given(st.lists(st.one_of(st.sampled_from(LS_FLAGS), st.text(max_size=12)), max_size=6))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_argv_after_ls_is_an_answer_or_one_line(words: list[str]) -> None:
    """Hostile argv in process: ``main`` returns a code (the source refuses, so nothing
    runs long) and an error is one ``pulltrace`` line, never a traceback."""
    import contextlib
    import io

    from pulltrace.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["ls", "--server", REFUSING, *words])
    lines = err.getvalue().strip().splitlines()
    assert code in (0, 2), (code, lines)
    if code:
        assert len(lines) == 1 and lines[0].startswith("pulltrace"), lines


def test_bash_completes_contexts_through_the_printed_script(tmp_path: Path) -> None:
    """The whole loop as bash runs it: the script from ``completion bash``, its function
    called as bash calls it on a tab, and the shipped ``pulltrace`` answering."""
    config = tmp_path / "config"
    config.write_text(KUBECONFIG)
    script = tmp_path / "pulltrace.bash"
    script.write_text(run("completion", "bash").stdout)
    line = f"COMP_WORDS=(pulltrace ls --kubeconfig {config} --context prod-); COMP_CWORD=5"
    program = f"source {script}; {line}; _pulltrace_completion pulltrace; "
    program += 'printf "%s\\n" "${COMPREPLY[@]}"'
    env = {**_no_source_env(tmp_path), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["prod-east", "prod-west"], out.stderr


def test_install_completion_writes_the_script_for_the_calling_shell(tmp_path: Path) -> None:
    env = {**_no_source_env(tmp_path), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    out = subprocess.run(
        ["bash", "-c", "pulltrace --install-completion"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    installed = tmp_path / ".bash_completions" / "pulltrace.sh"
    assert "_PULLTRACE_COMPLETE=complete_bash" in installed.read_text()
    assert str(installed) in (tmp_path / ".bashrc").read_text()


HEAVY = ("textual", "kubernetes", "httpx", "grpc", "starlette", "uvicorn", "pydantic")


@pytest.mark.parametrize(
    ("args", "ran", "also_absent"),
    [
        (["--version"], "typer", ("msgspec", "rich")),
        (["--help"], "typer", ("msgspec",)),
        (["ls", "--help"], "typer", ("msgspec",)),
        (["ls", "--json", "--server", REFUSING], "msgspec", ("rich", "typer")),
        (["history", "-o", "json", "--server", REFUSING], "typer", ("rich",)),
        (["updates", "--help"], "typer", ("msgspec",)),
        (["wait", "--bogus"], "typer", ("msgspec", "rich")),
    ],
)
def test_the_fast_paths_leave_the_heavy_modules_unloaded(
    args: list[str], ran: str, also_absent: tuple[str, ...]
) -> None:
    """Start-up: Typer's commands import their work lazily, Rich only renders help, and a plain
    ``ls`` listing does without Typer (``ran``: a module that shows the command ran)."""
    code = (
        "import contextlib, io, json, sys\n"
        "from pulltrace.cli import main\n"
        "quiet = io.StringIO()\n"
        "with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):\n"
        f"    main({args!r})\n"
        # pulltrace.client blocks httpx's CLI module with a None entry: not an import.
        "names = {m.split('.')[0] for m, mod in sys.modules.items() if mod is not None}\n"
        "print(json.dumps(sorted(names)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert ran in loaded
    assert loaded.isdisjoint((*HEAVY, *also_absent)), loaded & {*HEAVY, *also_absent}


def test_demo_without_the_collector_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``pip install pulltrace`` alone (the README's first command) has no collector: the
    history commands' demo says which extra it needs, and ``watch --demo`` still runs,
    simulated in the client."""
    from pulltrace.cli import demo_collector, main
    from pulltrace.tui.app import PulltraceApp

    monkeypatch.setattr(demo_collector, "collector_installed", lambda: False)
    assert main(["history", "--demo"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"pulltrace: {demo_collector.MISSING_SERVER}"]
    ran: list[PulltraceApp] = []
    monkeypatch.setattr(PulltraceApp, "run", lambda app: ran.append(app))
    assert main(["watch", "--demo"]) == 0
    assert [type(app.source).__name__ for app in ran] == ["DemoSource"]
