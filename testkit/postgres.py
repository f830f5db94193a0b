"""A private PostgreSQL cluster (Debian's ``postgresql`` package) for the history store's tests.

``initdb`` and ``pg_ctl`` refuse to run as root, so as root the cluster belongs to the
``postgres`` user the package creates (``runuser``); otherwise to the caller. It lives in a
temporary directory, listens on a free loopback port with trust authentication (nothing else
can reach it), skips fsync (the tests kill the collector, never the server), and is stopped and
deleted at the end. Each test gets a database of its own from ``fresh_database``.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Self

from testkit.util import free_port, wait_for

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


class PostgresError(RuntimeError):
    pass


def pg_bin_dir() -> Path | None:
    """The newest installed server's binaries, or None without the package."""
    found = sorted(glob.glob(PG_BIN_GLOB), key=lambda p: int(Path(p).parent.name))
    candidates = [Path(p) for p in found if os.access(Path(p) / "initdb", os.X_OK)]
    return candidates[-1] if candidates else None


def unavailable() -> str | None:
    """Why no cluster can be started here, or None."""
    if pg_bin_dir() is None:
        return "the history tests need PostgreSQL (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root needs the postgres user (apt-get install postgresql)"
    return None


class PostgresServer:
    def __init__(self) -> None:
        bin_dir = pg_bin_dir()
        if bin_dir is None:
            raise PostgresError("PostgreSQL is not installed")
        self.bin_dir = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pulltrace-pg-"))
        self.data = self.root / "data"
        self._owner: str | None = "postgres" if os.geteuid() == 0 else None
        self._names = itertools.count(1)
        self._started = False

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self._owner is not None:
            command = ["runuser", "-u", self._owner, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise PostgresError(f"{argv[0]} failed: {done.stderr.strip()[-2000:]}")
        return done

    def start(self) -> Self:
        if self._owner is not None:
            entry = pwd.getpwnam(self._owner)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E",
                  "UTF8", "--no-sync", "--locale=C")  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c fsync=off"
            f" -c unix_socket_directories={self.root} -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                  str(self.root / "server.log"), "-w", "-t", "60", "start")  # fmt: skip
        self._started = True
        wait_for(self._accepts, 20, "PostgreSQL to accept connections", ignore=(Exception,))
        return self

    def _accepts(self) -> bool:
        import psycopg

        with psycopg.connect(self.admin_url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
        return True

    def fresh_database(self) -> str:
        """A new empty database's URL."""
        import psycopg

        name = f"pulltrace_test_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}".encode())
        return self.url(name)

    def log(self) -> str:
        try:
            return (self.root / "server.log").read_text()[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self._started:
            self._started = False
            with contextlib.suppress(PostgresError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()
