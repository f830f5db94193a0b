"""A private containerd (with its CRI plugin) in a temp dir, for end-to-end pull tests.

It never touches the host's /var/lib/containerd or /run/containerd: root, state, socket, config
and registry hosts all live in one short /tmp dir, so several can run side by side and a test
can restart one mid-pull without losing its content store.

Which containerd runs is chosen by ``PULLTRACE_TEST_CONTAINERD`` (``1.6``, the default and the
machine's own, ``1.7`` or ``2.x``): scripts/fetch-containerd.sh unpacks the others from Debian's
packages, and each release gets the config format it reads natively (version 2 up to 1.7,
version 3 from 2.0 on, which 2.x would otherwise migrate with a warning).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .util import Managed, remove_tree, run_ctr, short_tmpdir, tail, terminate_group, wait_for

SERIES_ENV = "PULLTRACE_TEST_CONTAINERD"
SERIES = ("1.6", "1.7", "2.x")
FETCH_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fetch-containerd.sh"
CRI_PLUGIN = "io.containerd.grpc.v1.cri"

# Plugins that need kernel features or host services a sandbox lacks; disabled so their init
# errors never hide a real problem in the log.
DISABLED_PLUGINS = (
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
)

# Where either config version puts the daemon's own files, with double-quoted keys both read.
_BASE = """\
root = "{root}"
state = "{state}"
disabled_plugins = [{disabled}]

[grpc]
  address = "{address}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"
"""

_CONFIG_V2 = (
    "version = 2\n"
    + _BASE
    + """
[plugins."{cri}"]
  sandbox_image = "registry.k8s.io/pause:3.6"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  max_concurrent_downloads = {max_concurrent_downloads}

  [plugins."{cri}".cni]
    bin_dir = "{dir}/cni/bin"
    conf_dir = "{dir}/cni/net.d"

  [plugins."{cri}".containerd]
    snapshotter = "{snapshotter}"

  [plugins."{cri}".registry]
    config_path = "{certs}"
"""
)

# containerd 2.x: the CRI plugin is split into images and runtime plugins, and pulls go through
# the transfer service, which has its own registry hosts, download slots and unpack platforms
# (without unpack_config, `ctr images pull` fails with "no unpack platforms defined").
_CONFIG_V3 = (
    "version = 3\n"
    + _BASE
    + """
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "{snapshotter}"
  max_concurrent_downloads = {max_concurrent_downloads}

  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "registry.k8s.io/pause:3.10"

  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "{certs}"

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["{dir}/cni/bin"]
  conf_dir = "{dir}/cni/net.d"

[plugins.'{cri}']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins.'io.containerd.transfer.v1.local']
  config_path = "{certs}"
  max_concurrent_downloads = {max_concurrent_downloads}

  [[plugins.'io.containerd.transfer.v1.local'.unpack_config]]
    platform = "linux/amd64"
    snapshotter = "{snapshotter}"
"""
)

_HOSTS_TOML = """\
server = "http://{host_port}"

[host."http://{host_port}"]
  capabilities = ["pull", "resolve"]
"""


class ContainerdError(RuntimeError):
    """containerd failed to start; the message carries the end of its log."""


@dataclass(frozen=True)
class Release:
    """One containerd release the tests can run: its binaries and what it calls itself."""

    series: str
    bin_dir: Path
    version: str  # as ``containerd --version`` prints it, e.g. 2.1.9+unknown

    @property
    def containerd(self) -> str:
        return str(self.bin_dir / "containerd")

    @property
    def ctr(self) -> str:
        return str(self.bin_dir / "ctr")

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def config_template(self) -> str:
        return _CONFIG_V3 if self.major >= 2 else _CONFIG_V2


def selected_series() -> str:
    series = os.environ.get(SERIES_ENV, "") or "1.6"
    if series not in SERIES:
        raise ContainerdError(f"{SERIES_ENV}={series!r}: expected one of {', '.join(SERIES)}")
    return series


@functools.cache
def selected_release(series: str | None = None) -> Release:
    """The release ``series`` names (by default the one the environment selects), fetched and
    unpacked on first use; raises ContainerdError with the script's own words when it cannot."""
    series = series or selected_series()
    proc = subprocess.run(
        ["bash", str(FETCH_SCRIPT), series], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise ContainerdError(
            f"cannot get containerd {series}: {proc.stderr.strip() or proc.stdout.strip()}"
        )
    bin_dir = Path(proc.stdout.split()[-1])
    try:
        out = subprocess.run(
            [str(bin_dir / "containerd"), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ContainerdError(f"containerd {series} in {bin_dir} does not run: {exc}") from exc
    match = re.search(r" v?(\d+\.\d+\.\d+\S*)", out)
    if match is None:
        raise ContainerdError(f"cannot read the version of containerd {series}: {out.strip()}")
    return Release(series, bin_dir, match.group(1))


class Containerd(Managed):
    """One containerd daemon; ``restart()`` keeps root, state, socket and registry hosts."""

    def __init__(
        self,
        *,
        snapshotter: str = "native",
        max_concurrent_downloads: int = 3,
        release: Release | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.dir = short_tmpdir("pt-")
        self.root = self.dir / "root"
        self.state = self.dir / "state"
        self.certs_dir = self.dir / "certs.d"
        self.config_path = self.dir / "config.toml"
        self.log_path = self.dir / "containerd.log"
        self.address = str(self.dir / "containerd.sock")
        self.snapshotter = snapshotter
        self.max_concurrent_downloads = max_concurrent_downloads
        self.release = release or selected_release()
        self.start_timeout = start_timeout
        self.last_start_seconds = 0.0  # how long the latest start() took, for reports
        self._proc: subprocess.Popen[bytes] | None = None
        if len(self.address) >= 100:
            raise ValueError(f"socket path too long for a unix socket: {self.address}")
        self.certs_dir.mkdir()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def write_config(self) -> None:
        self.config_path.write_text(
            self.release.config_template.format(
                root=self.root,
                state=self.state,
                dir=self.dir,
                address=self.address,
                disabled=", ".join(f'"{p}"' for p in DISABLED_PLUGINS),
                cri=CRI_PLUGIN,
                snapshotter=self.snapshotter,
                certs=self.certs_dir,
                max_concurrent_downloads=self.max_concurrent_downloads,
            )
        )

    def add_registry_host(self, host_port: str) -> Path:
        """Makes CRI pulls from ``host_port`` plain HTTP; containerd reads it on the next pull."""
        host_dir = self.certs_dir / host_port
        host_dir.mkdir(parents=True, exist_ok=True)
        path = host_dir / "hosts.toml"
        path.write_text(_HOSTS_TOML.format(host_port=host_port))
        return path

    def start(self) -> Containerd:
        if self.running:
            return self
        self.write_config()
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {time.strftime('%H:%M:%S')} ===\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [self.release.containerd, "--config", str(self.config_path), "--log-level", "info"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            wait_for(self._ready, self.start_timeout, f"containerd on {self.address}")
        except Exception as exc:
            self.stop(kill=True)
            raise ContainerdError(
                f"containerd did not become ready: {exc}\n"
                f"--- {self.log_path} (tail) ---\n{tail(self.log_path)}"
            ) from exc
        self.last_start_seconds = time.monotonic() - began
        return self

    def _ready(self) -> bool:
        """Ready means the socket serves gRPC and the CRI plugin loaded without error."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise ContainerdError(f"containerd exited with status {proc and proc.returncode}")
        try:
            self.ctr("version", timeout=5)
            plugins = self.ctr("plugins", "ls", timeout=5)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return False
        for line in plugins.splitlines():
            fields = line.split()
            if fields[:2] == ["io.containerd.grpc.v1", "cri"]:
                if fields[-1] != "ok":
                    raise ContainerdError(f"CRI plugin not ok: {line}")
                return True
        raise ContainerdError("CRI plugin missing from `ctr plugins ls`")

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL with ``kill``) to the daemon's whole process group."""
        if self._proc is not None:
            terminate_group(self._proc, kill=kill)
            self._proc = None

    def restart(self, kill: bool = False) -> Containerd:
        """Same root, state and socket: the content store and any half-done ingests survive."""
        self.stop(kill=kill)
        return self.start()

    def ctr(self, *args: str, namespace: str = "k8s.io", timeout: float = 30.0) -> str:
        return run_ctr(
            self.address, *args, namespace=namespace, timeout=timeout, ctr=self.release.ctr
        )

    def active_ingests(self, namespace: str = "k8s.io") -> dict[str, str]:
        """``ctr content active``: ingest ref -> human-readable bytes so far."""
        return parse_content_active(self.ctr("content", "active", namespace=namespace))

    def content_labels(self, namespace: str = "k8s.io") -> dict[str, dict[str, str]]:
        """``ctr content ls``: digest -> labels of every committed blob."""
        return parse_content_ls(self.ctr("content", "ls", namespace=namespace))

    def image_names(self, namespace: str = "k8s.io") -> list[str]:
        return self.ctr("images", "ls", "--quiet", namespace=namespace).split()

    def close(self) -> None:
        self.stop()
        remove_tree(self.dir)


def _rows(text: str) -> list[list[str]]:
    """ctr prints tab-separated columns (some, like AGE, contain spaces); drops the header."""
    lines = text.splitlines()[1:]
    return [[f for f in line.split("\t") if f] for line in lines if line.strip()]


def parse_content_active(text: str) -> dict[str, str]:
    return {row[0]: row[1] for row in _rows(text)}


def parse_content_ls(text: str) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {}
    for row in _rows(text):
        labels = row[3] if len(row) > 3 else ""
        pairs = (item.partition("=") for item in labels.split(",") if item)
        result[row[0]] = {key: value for key, _, value in pairs}
    return result
