"""A throwaway Docker distribution registry on loopback, so pushes and pulls stay on this host."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import httpx

from .util import Managed, free_port, remove_tree, short_tmpdir, tail, terminate_group, wait_for

REGISTRY_BIN = "/usr/bin/docker-registry"

_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
"""


class RegistryError(RuntimeError):
    """The registry did not come up; the message carries the end of its log."""


class Registry(Managed):
    """Runs ``docker-registry serve`` with filesystem storage in its own temp dir."""

    def __init__(self, binary: str = REGISTRY_BIN, start_timeout: float = 20.0) -> None:
        self.binary = binary
        self.start_timeout = start_timeout
        self.dir = short_tmpdir("pt-reg-")
        self.log_path = self.dir / "registry.log"
        self.config_path = self.dir / "config.yml"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host_port}"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def start(self) -> Registry:
        # A free port can be taken between our probe and the registry's bind; retrying is
        # cheaper than passing a listening socket into a Go program.
        last: Exception | None = None
        for _ in range(3):
            self.port = free_port()
            self.config_path.write_text(_CONFIG.format(data=self.data_dir, port=self.port))
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(
                    [self.binary, "serve", str(self.config_path)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            try:
                wait_for(self._ready, self.start_timeout, f"registry on {self.host_port}")
                return self
            except Exception as exc:
                last = exc
                self.stop()
        raise RegistryError(
            f"docker-registry did not start: {last}\n--- {self.log_path} ---\n{tail(self.log_path)}"
        )

    def _ready(self) -> bool:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise RegistryError(f"docker-registry exited with {proc and proc.returncode}")
        try:
            return httpx.get(f"{self.url}/v2/", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def forget(self, repo: str, digests: Iterable[str]) -> None:
        """Deletes a repository and its blobs from the storage directory, so that a long run
        pushing fresh images keeps the disk bounded. The registry's API only unlinks blobs
        (their bytes go only with an offline garbage collection), so the files go directly;
        safe only for blobs no other repository shares and nothing will pull again, which
        is what a fresh image with unique layer seeds is once its pull is done."""
        root = self.data_dir / "docker" / "registry" / "v2"
        shutil.rmtree(root / "repositories" / repo, ignore_errors=True)
        for digest in digests:
            algorithm, _, hexdigest = digest.partition(":")
            shutil.rmtree(
                root / "blobs" / algorithm / hexdigest[:2] / hexdigest, ignore_errors=True
            )

    def stop(self) -> None:
        if self._proc is not None:
            terminate_group(self._proc)
            self._proc = None

    def close(self) -> None:
        self.stop()
        remove_tree(self.dir)
