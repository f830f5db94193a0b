"""Bad input gets one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


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
    assert "unrecognized arguments: --bogus" in out.stderr
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
        (["watch", "--bogus"], 2, "unrecognized arguments: --bogus"),
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
