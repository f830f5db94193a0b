"""Small helpers shared by the infra modules."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, TypeVar

T = TypeVar("T")

CTR = "/usr/bin/ctr"
MiB = 1 << 20
# Every wait's deadline is multiplied by this. A wait returns as soon as its event happens, so a
# long deadline costs nothing when the system is healthy; a short one turned a loaded two-core CI
# machine into failures (the containerd-restart tests timed out under load).
DEADLINE_SCALE = float(os.environ.get("PULLTRACE_TEST_DEADLINE_SCALE", "3"))


def wait_for(
    check: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.05,
    ignore: tuple[type[Exception], ...] = (),
) -> T:
    """Polls instead of sleeping a fixed time, so tests are as fast as the system allows.

    Returns the first truthy value ``check`` gives. Exceptions in ``ignore`` count as "not yet"
    (the last one is chained to the TimeoutError); any other exception aborts the wait at once,
    which lets a check fail fast when, say, the daemon it waits for has exited. ``timeout`` is
    what a healthy machine needs; the deadline is that times ``DEADLINE_SCALE``.
    """
    timeout *= DEADLINE_SCALE
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except ignore as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}") from last_exc
        time.sleep(interval)


def free_port() -> int:
    """The kernel's pick of an unused loopback port; the tiny race with the real bind is fine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tail(path: Path, lines: int = 40) -> str:
    """The end of a daemon log, for error messages that explain a failed start."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def short_tmpdir(prefix: str) -> Path:
    """Unix socket paths must stay under ~100 bytes, so temp dirs live directly in /tmp."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def remove_tree(path: Path) -> None:
    """Keeps the temp dir when PULLTRACE_KEEP_TMP is set, for post-mortems of failed runs."""
    if os.environ.get("PULLTRACE_KEEP_TMP"):
        return
    shutil.rmtree(path, ignore_errors=True)


def run_ctr(
    address: str, *args: str, namespace: str = "k8s.io", timeout: float = 30.0, ctr: str = CTR
) -> str:
    """Runs ``ctr`` against one socket and returns stdout; a failure carries ctr's stderr."""
    cmd = [ctr, "--address", address, "--namespace", namespace, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return proc.stdout


def terminate_group(proc: subprocess.Popen[Any], kill: bool = False, grace: float = 10.0) -> None:
    """Signals the whole process group so helpers a daemon spawned die with it."""
    if proc.poll() is not None:
        return
    sig = signal.SIGKILL if kill else signal.SIGTERM
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


class Managed:
    """Started on entering a ``with`` block and closed on leaving it, whatever happened."""

    def start(self) -> Self:
        return self

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
