"""Start-up cost of the commands people type most, beside kubectl's in the same run.

`pulltrace --version` is the interpreter plus Typer and the command declarations;
`pulltrace --help` adds Rich, which renders the help panels; `pulltrace ls --json` against a
loopback collector is the source resolution, two REST calls and the output, without Typer
(pulltrace.cli.quick reads a plain `ls` command line itself). Each is compared with
`kubectl version --client` (v1.35, `bash scripts/fetch-tools.sh` puts it in .tools/bin), which a
Kubernetes user runs without thinking about it. Runs are interleaved so that load on the
machine hits all alike; wall and CPU (user + system) medians are printed, and the load average.
Target: ls --json <= 1.5 x kubectl.

Then where `ls --json` spends its import time, and what Typer (with its vendored Click,
shellingham and annotated-doc) costs `--version`: from `python -X importtime`, the least of five
runs of each module, so that load inflates them least.

pulltrace is measured as users get it: built into a wheel and installed (not editable) into a
fresh venv, with the dependency versions of constraints.txt, where pip compiles the bytecode. A
development checkout's editable install adds an import hook (`__editable___pulltrace_*_finder`)
that costs about 11 ms at every start, which no user pays.

    python bench/startup.py [--runs 30] [--pulltrace PATH]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pulltrace.model import AgentReport, LayerStatus, PullStatus, encode
from testkit.util import free_port

TARGET = 1.5


def start_collector(port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULLTRACE_", "KUBE"))}
    env["KUBECONFIG"] = "/nonexistent"  # correlation off: this measures the client
    cmd = [sys.executable, "-m", "pulltrace.cli", "collector", "--listen", f"127.0.0.1:{port}"]
    cmd += ["--metrics-listen", f"127.0.0.1:{free_port()}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("bench: the collector did not start")


def seed_pulls(port: int, nodes: int = 20) -> None:
    """A realistic listing: one pull of a few layers per node."""
    import httpx

    now = datetime.now(UTC)
    for n in range(nodes):
        layers = [
            LayerStatus(
                digest=f"sha256:{n:04d}{i:060d}",
                total_bytes=50_000_000,
                downloaded_bytes=10_000_000 * i,
                total_known=True,
            )
            for i in range(5)
        ]
        pull = PullStatus(
            id=f"pull-{n}",
            node_name=f"node-{n}",
            image_ref=f"docker.io/library/app{n}@sha256:{n:064d}",
            repository=f"docker.io/library/app{n}",
            manifest_digest=f"sha256:{n:064d}",
            total_bytes=250_000_000,
            downloaded_bytes=100_000_000,
            percent=40.0,
            layer_count=5,
            started_at=now,
            layers=layers,
            total_known=True,
        )
        report = AgentReport(node_name=f"node-{n}", timestamp=now, pulls=[pull])
        httpx.post(f"http://127.0.0.1:{port}/api/v1/report", content=encode(report))


def timed(cmd: Sequence[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) milliseconds of one run. CPU time is what the command
    costs; on a loaded machine the wall time also holds the time spent waiting for a core."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed: {done.stderr.decode().strip()}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return elapsed * 1000, cpu * 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--pulltrace", help="a pulltrace command to time instead of a fresh install of this tree"
    )
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    kubectl = shutil.which("kubectl", path=f"{repo / '.tools' / 'bin'}:{os.environ['PATH']}")
    if not kubectl:
        raise SystemExit("bench: needs kubectl: bash scripts/fetch-tools.sh")
    with tempfile.TemporaryDirectory(prefix="pulltrace-startup-") as tmp:
        pulltrace = args.pulltrace or install(Path(tmp))
        return measure(kubectl, pulltrace, args.runs)


def install(where: Path) -> str:
    """A venv with this tree installed as a user would (``pip install .``)."""
    repo = Path(__file__).resolve().parents[1]
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    pip += ["--disable-pip-version-check", "-c", str(repo / "constraints.txt")]
    done = subprocess.run([*pip, str(repo)], capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"bench: pip install failed: {done.stderr.decode().strip()[-300:]}")
    return str(venv / "bin" / "pulltrace")


def measure(kubectl: str, pulltrace: str, runs: int) -> int:
    port = free_port()
    collector = start_collector(port)
    try:
        seed_pulls(port)
        commands = {
            "kubectl version --client": [kubectl, "version", "--client"],
            "pulltrace --version": [pulltrace, "--version"],
            "pulltrace --help": [pulltrace, "--help"],
            "pulltrace ls --json": [
                pulltrace,
                "ls",
                "--json",
                "--server",
                f"http://127.0.0.1:{port}",
            ],
        }
        for cmd in commands.values():
            timed(cmd)  # warm the page cache
        samples: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, cmd in commands.items():
                wall, used = timed(cmd)
                samples[name].append(wall)
                cpu[name].append(used)
        python = Path(pulltrace).with_name("python")
        # the console script itself, as the commands above (python -m would add runpy)
        ls = commands["pulltrace ls --json"]
        version = commands["pulltrace --version"]
        costs = []
        if python.exists():
            costs = import_costs(str(python), "ls --json", ls)
            costs += import_costs(str(python), "--version", version, prefixes=CLI_MODULES)
    finally:
        collector.terminate()
        collector.wait(10)
    base = statistics.median(samples["kubectl version --client"])
    cpu_base = statistics.median(cpu["kubectl version --client"])
    load = os.getloadavg()[0]
    print(f"start-up, median of {runs} interleaved runs (ms); pulltrace is {pulltrace}")
    if "pulltrace-startup-" in pulltrace:
        print("(this tree's wheel in a fresh venv, as users install it: not editable)")
    print(f"load average {load:.1f} on {os.cpu_count()} CPUs")
    print(f"{'command':<28}{'median':>8}{'p90':>8}{'x kubectl':>11}{'CPU':>8}{'x kubectl':>11}")
    verdicts = []
    for name, xs in samples.items():
        median = statistics.median(xs)
        p90 = statistics.quantiles(xs, n=10)[-1]
        ratio = median / base
        used = statistics.median(cpu[name])
        print(f"{name:<28}{median:8.1f}{p90:8.1f}{ratio:11.2f}{used:8.1f}{used / cpu_base:11.2f}")
        if name != "kubectl version --client":
            verdict = "PASS" if ratio <= TARGET else "FAIL"
            verdicts.append(f"{verdict}  {name}: {ratio:.2f} x kubectl (target <= {TARGET})")
    print("\n".join(verdicts))
    print("\n".join(costs))
    return 0


CLI_MODULES = ("typer", "shellingham", "annotated_doc", "pulltrace.cli")
TOP = 8


def import_costs(
    python: str, label: str, args: list[str], runs: int = 5, prefixes: Sequence[str] = ()
) -> list[str]:
    """Lines to print from ``-X importtime``: the ``TOP`` costliest imports made at the top
    level (each with what it imports) and packages (their modules' own time), or with
    ``prefixes`` the self time of those packages."""
    self_us: dict[str, int] = {}
    cumulative: dict[str, int] = {}
    top: list[str] = []
    for _ in range(runs):
        # -I: not the checkout in the working directory, the installed package being timed
        done = subprocess.run(
            [python, "-I", "-X", "importtime", *args], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"bench: {' '.join(args)} failed: {done.stderr.strip()[-300:]}")
        for line in done.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            mine, total, name = line.removeprefix("import time:").split("|")
            if len(name) - len(name.lstrip()) == 1 and name not in top:  # not nested
                top.append(name)
            name = name.strip()
            self_us[name] = min(self_us.get(name, 1 << 62), int(mine))
            cumulative[name] = min(cumulative.get(name, 1 << 62), int(total))
    head = f"\n{label}: imports (ms), least of {runs} runs of -X importtime"
    lines = [f"{head}; all {sum(self_us.values()) / 1000:.1f} ms in {len(self_us)} modules"]
    for prefix in prefixes:
        found = [us for n, us in self_us.items() if n == prefix or n.startswith(prefix + ".")]
        lines.append(f"  {prefix + '*':<32}{sum(found) / 1000:8.1f}   self, {len(found)} modules")
    if not prefixes:
        names = sorted({n.strip() for n in top}, key=lambda n: -cumulative[n])[:TOP]
        lines += [f"  {n:<32}{cumulative[n] / 1000:8.1f}   with its imports" for n in names]
        packages: dict[str, int] = {}
        for name, us in self_us.items():
            packages[name.split(".")[0]] = packages.get(name.split(".")[0], 0) + us
        ranked = sorted(packages.items(), key=lambda item: -item[1])[:TOP]
        lines += [f"  {p + '*':<32}{us / 1000:8.1f}   self" for p, us in ranked]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
