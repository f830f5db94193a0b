"""Runs a rendered pod spec as processes on this machine, the way kubelet and the container
runtime would run it, so that a test exercises the chart as written rather than our idea of it.

What a manifest says is applied; what cannot be reproduced here fails loudly (``PodError``), so
a chart that starts using something new cannot pass by being half-run:

- the image: its Dockerfile's build stage replayed (testkit/dockerfile.py: ``COPY``
  through .dockerignore, its own ``pip install`` lines) into a venv of Debian's
  ``/usr/bin/python3`` (readable by any uid, unlike a developer's pyenv), and its final stage's
  ``ENTRYPOINT``, ``CMD``, ``ENV``, ``USER`` and ``WORKDIR``;
- the container: ``command``/``args`` (with ``$(VAR)`` expansion), ``env`` (``value``, a
  ``secretKeyRef`` read from the rendered Secret, a ``fieldRef`` to ``spec.nodeName``), the
  Service environment variables kubelet adds, and ``HOSTNAME``/``HOME``;
- the filesystem, in a private mount namespace (``unshare -m``): a fresh tmpfs on ``/run`` and
  ``/tmp`` (an image has nothing there), the pod's ``hostPath`` volumes bound from the node's
  ``/run`` with their ``type`` checked (``DirectoryOrCreate`` creating the directory as kubelet
  does), ``readOnly`` mounts remounted read-only, the service account token when it is
  automounted, an ``/etc/hosts`` standing in for cluster DNS (every Service name on loopback),
  and ``readOnlyRootFilesystem`` as every other writable mount but ``/proc``, ``/sys``, ``/dev``
  and the pod's writable volumes remounted read-only;
- the identity, through ``setpriv``: ``runAsUser``/``runAsGroup`` (else the image's ``USER``),
  ``supplementalGroups`` and ``fsGroup`` (also the group of an ``emptyDir``), ``runAsNonRoot``,
  ``allowPrivilegeEscalation: false`` as
  no-new-privs, and the runtime's default capabilities less ``capabilities.drop`` plus ``add``;
- probes: ``httpGet`` and ``tcpSocket`` against the container's ports on loopback;
- Services: a name resolves to loopback, where the pods listen; ``service_forwards`` lists the
  ports a relay must map when a ``targetPort`` differs from the Service's port.

``Container.verify`` reads the result back from /proc (uid, gids, no-new-privs, capabilities,
mount flags), so a step that silently did nothing fails the test.

Not reproduced: a network namespace per pod (every pod shares this machine's network, so ports
are the host's), cgroup resource limits, seccomp and AppArmor profiles, the image's own root
filesystem (this machine's stands in; only the installed Python packages are the image's, on
Debian's Python 3.11.2 rather than the image's 3.11.x), the base image's environment beyond
``PATH`` and ``LANG``, volume types other than ``hostPath`` and a disk ``emptyDir``, and init
or sidecar containers.
"""

from __future__ import annotations

import base64
import fcntl
import functools
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import testkit.dockerfile
from testkit.dockerfile import Dockerfile, DockerIgnore, replay, role_dockerfile

if TYPE_CHECKING:
    from testkit.stack import LoggedProcess

Obj = dict[str, Any]

HOST_PYTHON = "/usr/bin/python3"
"""Debian's Python: under /usr, so any uid can run it (a pyenv under /root cannot)."""
SETPRIV = "/usr/bin/setpriv"
UNSHARE = "/usr/bin/unshare"
REPO = Path(__file__).resolve().parents[1]
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAPS = {
    "chown": 0, "dac_override": 1, "fowner": 3, "fsetid": 4, "kill": 5, "setgid": 6,
    "setuid": 7, "setpcap": 8, "net_bind_service": 10, "net_raw": 13, "sys_chroot": 18,
    "mknod": 27, "audit_write": 29, "setfcap": 31,
}  # fmt: skip
"""containerd's default set for a container that asks for nothing else (name: bit), which is
also every capability a pod may add here."""
SIOCGIFADDR = 0x8915

# Keys that change nothing when every pod runs on one machine; any other key is refused.
_POD_KEYS = {
    "containers", "volumes", "securityContext", "serviceAccountName",
    "automountServiceAccountToken", "enableServiceLinks", "nodeSelector", "tolerations",
    "affinity", "priorityClassName", "imagePullSecrets", "terminationGracePeriodSeconds",
}  # fmt: skip
_CONTAINER_KEYS = {
    "name", "image", "imagePullPolicy", "command", "args", "env", "ports", "volumeMounts",
    "securityContext", "resources", "readinessProbe", "livenessProbe", "startupProbe",
}  # fmt: skip
_SECURITY_KEYS = {
    "runAsUser", "runAsGroup", "runAsNonRoot", "supplementalGroups", "allowPrivilegeEscalation",
    "readOnlyRootFilesystem", "capabilities", "seccompProfile", "privileged", "fsGroup",
}  # fmt: skip


class PodError(RuntimeError):
    """The pod cannot start (kubelet would refuse it too), or it asks for something this
    harness does not reproduce."""


def _refuse_unknown(obj: Obj, known: set[str], where: str) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        raise PodError(f"{where}: {', '.join(unknown)} not reproduced by testkit/pod.py")


# -- images ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """What a container of this image starts from: the final stage's settings, and ``python``,
    the venv standing in for the image's Python with what its build stage installed."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: Mapping[str, str]
    user: str
    workdir: str
    python: Path


_FINAL_IGNORED = ("ARG", "LABEL", "EXPOSE")


def image_config(dockerfile: Dockerfile, python: Path) -> Image:
    """The final stage's ``ENTRYPOINT``, ``CMD``, ``ENV``, ``USER`` and ``WORKDIR``; its only
    ``COPY`` may be the build stage's install (``--from``), which ``python`` holds. Anything
    else there is refused: it would make the image differ from the venv."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    env: dict[str, str] = {}
    user, workdir = "0", "/"
    for instruction in dockerfile.final.instructions:
        keyword, args = instruction.keyword, instruction.args
        if keyword == "ENTRYPOINT":
            entrypoint, cmd = instruction.json_args(), []
        elif keyword == "CMD":
            cmd = instruction.json_args()
        elif keyword == "ENV":
            words = shlex.split(args)
            pairs = (
                [w.partition("=") for w in words]
                if "=" in words[0]
                else [(words[0], "=", " ".join(words[1:]))]
            )
            for key, _, value in pairs:
                if "$" in value:
                    raise PodError(
                        f"{dockerfile.path}: ENV {key}={value}: expansion not reproduced"
                    )
                env[key] = value
        elif keyword == "USER":
            user = args
        elif keyword == "WORKDIR":
            workdir = os.path.join(workdir, args)
        elif keyword == "COPY" and args.startswith("--from="):
            continue
        elif keyword not in _FINAL_IGNORED:
            raise PodError(f"{dockerfile.path}: {keyword} {args} in the final stage not reproduced")
    return Image(tuple(entrypoint), tuple(cmd), env, user, workdir, python)


IMAGE_CACHE = Path("/var/tmp/pulltrace-e2e-images")
"""Built images by the hash of everything that goes into them (the Dockerfile, its build
context, the host Python and the code that builds them), as a container builder caches layers;
world-readable, and outside /tmp's per-test directories so that a rerun of unchanged code skips
the pip installs."""


def _image_key(dockerfile: Dockerfile) -> str:
    digest = hashlib.sha256()
    version = subprocess.run([HOST_PYTHON, "--version"], capture_output=True, text=True).stdout
    builders = (Path(__file__), Path(testkit.dockerfile.__file__), dockerfile.path)
    for part in (*(p.read_bytes() for p in builders), version.encode()):
        digest.update(hashlib.sha256(part).digest())
    for relative in DockerIgnore.of_repo().context_files():
        digest.update(relative.encode() + b"\0")
        digest.update(hashlib.sha256((testkit.dockerfile.ROOT / relative).read_bytes()).digest())
    return digest.hexdigest()[:20]


def build_image(role: str) -> Image:
    """The role's image: its Dockerfile's build stage replayed (testkit/dockerfile.py) into
    a venv of Debian's Python, world-readable so that the container's uid can run it, or found
    already built from the same inputs."""
    dockerfile = role_dockerfile(role)
    IMAGE_CACHE.mkdir(mode=0o755, exist_ok=True)
    dest = IMAGE_CACHE / f"{role}-{_image_key(dockerfile)}"
    python = dest / "python"
    with (IMAGE_CACHE / f"{dest.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be building the same
        if not (dest / "complete").exists():
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(mode=0o755)
            # Without pip inside (that would need Debian's python3-venv): this process's pip
            # installs into it, running under its interpreter, so wheels are chosen for it.
            subprocess.run([HOST_PYTHON, "-m", "venv", "--without-pip", str(python)], check=True)
            pip = [sys.executable, "-m", "pip", "--python", str(python / "bin" / "python")]
            replay(dockerfile, dest / "stage", pip)
            (dest / "complete").touch()
    return image_config(dockerfile, python)


def prune_images(keep: int = 2, grace: float = 3600.0) -> None:
    """Per role, drops the cached images beyond the ``keep`` most recently built or used, once
    nobody has used them for ``grace`` seconds (another checkout may be running on one)."""
    cutoff = time.time() - grace
    locks = sorted(IMAGE_CACHE.glob("*.lock"), key=lambda p: p.stat().st_mtime, reverse=True)
    for role in testkit.dockerfile.ROLES:
        mine = [lock for lock in locks if lock.name.startswith(f"{role}-")]
        for lock in mine[keep:]:
            if lock.stat().st_mtime < cutoff:
                shutil.rmtree(lock.with_suffix(""), ignore_errors=True)
                lock.unlink(missing_ok=True)


HARNESS_TOOLS = {HOST_PYTHON: "python3", SETPRIV: "util-linux", UNSHARE: "util-linux"}
"""What this module runs (path: Debian package)."""


def ensure_debian_tools(tools: Mapping[str, str]) -> None:
    """Installs the packages of missing tools: CI runs on a fresh machine, as root."""
    missing = sorted({pkg for path, pkg in tools.items() if not os.access(path, os.X_OK)})
    if not missing:
        return
    if os.geteuid() != 0:
        raise PodError(f"missing {', '.join(missing)}: apt-get install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    subprocess.run(install, check=True, env=env)


# -- manifests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifests:
    """A release's rendered objects, all in ``namespace``."""

    namespace: str
    objects: list[Obj]

    def all(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o.get("kind") == kind]

    def get(self, kind: str, name: str) -> Obj | None:
        return next((o for o in self.all(kind) if o["metadata"]["name"] == name), None)

    def only(self, kind: str) -> Obj:
        found = self.all(kind)
        if len(found) != 1:
            raise PodError(f"expected one {kind}, the chart renders {len(found)}")
        return found[0]

    def secret_value(self, name: str, key: str) -> str | None:
        secret = self.get("Secret", name)
        if secret is None:
            return None
        if key in (secret.get("stringData") or {}):
            return str(secret["stringData"][key])
        data = secret.get("data") or {}
        return base64.b64decode(data[key]).decode() if key in data else None

    def selected(self, service: Obj) -> Obj:
        """The one workload whose pods the Service selects."""
        selector = service["spec"].get("selector") or {}
        for kind in ("Deployment", "DaemonSet", "StatefulSet"):
            for workload in self.all(kind):
                labels = workload["spec"]["template"]["metadata"].get("labels") or {}
                if selector and selector.items() <= labels.items():
                    return workload
        raise PodError(f"Service {service['metadata']['name']} selects no workload")


def service_forwards(manifests: Manifests) -> list[tuple[int, int]]:
    """(Service port, container port) for every Service port whose ``targetPort`` (a number or
    a name of the selected pod's ports) differs from it: with every pod on this machine's
    network, only those need a relay to play the Service."""
    forwards = []
    for service in manifests.all("Service"):
        workload = manifests.selected(service)
        ports: dict[str, int] = {}
        for c in workload["spec"]["template"]["spec"]["containers"]:
            ports.update(container_ports(c))
        for port in service["spec"].get("ports") or []:
            target = str(port.get("targetPort", port["port"]))
            if target in ports:
                number = ports[target]
            elif target.isdigit():
                number = int(target)
            else:
                raise PodError(f"Service {service['metadata']['name']}: no port named {target}")
            if number != port["port"]:
                forwards.append((int(port["port"]), number))
    return forwards


# -- the node and the cluster ----------------------------------------------------------------


class Node:
    """What ``hostPath`` volumes reach on a node: its ``/run`` (where containerd keeps its
    socket), kept in ``root``. A hostPath anywhere else is refused: this machine's own
    filesystem is not a node's."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root
        (root / "run").mkdir(parents=True, exist_ok=True)

    def place(self, path: str, directory: Path, mode: int = 0o711) -> None:
        """Makes ``path`` on the node be ``directory`` (a symlink that mounts follow), with
        containerd's mode for its state directory: others may traverse, not list."""
        link = self.resolve(path)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(directory)
        directory.chmod(mode)

    def host_path(self, path: str, kind: str) -> Path:
        """Where a hostPath volume's ``path`` is, after kubelet's checks of its ``type``
        (pkg/volume/hostpath): ``...OrCreate`` creates what is missing, the rest must exist."""
        checks = {
            "": None,
            "DirectoryOrCreate": stat.S_ISDIR,
            "Directory": stat.S_ISDIR,
            "FileOrCreate": stat.S_ISREG,
            "File": stat.S_ISREG,
            "Socket": stat.S_ISSOCK,
        }
        if kind not in checks:
            raise PodError(f"hostPath type {kind} not reproduced")
        resolved = self.resolve(path)
        if kind == "DirectoryOrCreate" and not resolved.exists():
            resolved.mkdir(mode=0o755, parents=True)
        elif kind == "FileOrCreate" and not resolved.exists():
            resolved.parent.mkdir(parents=True, exist_ok=True)
            resolved.touch(mode=0o644)
        check = checks[kind]
        if check is not None:
            try:
                mode = resolved.stat().st_mode
            except FileNotFoundError:
                raise PodError(f"hostPath {path} ({kind}) does not exist on {self.name}") from None
            if not check(mode):
                raise PodError(f"hostPath {path} on {self.name} is not a {kind}")
        return resolved

    def resolve(self, path: str) -> Path:
        norm = os.path.normpath(path)
        if norm != "/run" and not norm.startswith("/run/"):
            raise PodError(f"hostPath {path}: the emulated node has only /run")
        return self.root / norm.lstrip("/")


@dataclass(frozen=True)
class Cluster:
    """What kubelet gives every pod: the API server's Service and the account to reach it."""

    api_host: str
    api_port: int
    ca: Path
    token: str


# -- pods ------------------------------------------------------------------------------------


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` escapes, anything
    else stays as written."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, text)


def service_env(manifests: Manifests, cluster: Cluster, links: bool) -> dict[str, str]:
    """pkg/kubelet/envvars: the API server's variables always, every Service of the namespace's
    when ``enableServiceLinks`` (the default). Cluster IPs are loopback here."""
    env: dict[str, str] = {}
    api_ports: list[Obj] = [{"name": "https", "port": cluster.api_port}]
    services: list[tuple[str, str, list[Obj]]] = [("kubernetes", cluster.api_host, api_ports)]
    if links:
        services += [
            (s["metadata"]["name"], pod_ip(), s["spec"].get("ports") or [])
            for s in manifests.all("Service")
            if s["spec"].get("clusterIP") != "None"
        ]
    for name, ip, ports in services:
        prefix = name.upper().replace("-", "_")
        env[f"{prefix}_SERVICE_HOST"] = ip
        for index, port in enumerate(ports):
            number, proto = port["port"], port.get("protocol", "TCP")
            if index == 0:
                env[f"{prefix}_SERVICE_PORT"] = str(number)
                env[f"{prefix}_PORT"] = f"{proto.lower()}://{ip}:{number}"
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(number)
            link = f"{prefix}_PORT_{number}_{proto}"
            env[link] = f"{proto.lower()}://{ip}:{number}"
            env[f"{link}_PROTO"], env[f"{link}_PORT"] = proto.lower(), str(number)
            env[f"{link}_ADDR"] = ip
    return env


@functools.cache
def pod_ip() -> str:
    """Every pod's IP here: this machine's first non-loopback IPv4 address, so that a probe or
    a Service reaches a process the way kubelet and kube-proxy do, and one that listens on
    loopback only is not reached (loopback when there is no other address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name[:15].encode())
            try:
                address = socket.inet_ntoa(fcntl.ioctl(s.fileno(), SIOCGIFADDR, request)[20:24])
            except OSError:
                continue  # an interface without an IPv4 address
            if not address.startswith("127."):
                return address
    return "127.0.0.1"


def hosts_file(manifests: Manifests, pod_name: str) -> str:
    """Kubelet's /etc/hosts plus, standing in for cluster DNS, every name of every Service of
    the namespace on the pods' IP (they share this machine's network)."""
    ns = manifests.namespace
    ip = pod_ip()
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost", f"{ip}\t{pod_name}"]
    for service in manifests.all("Service"):
        name = service["metadata"]["name"]
        names = [name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]
        lines.append(f"{ip}\t" + " ".join(names))
    return "\n".join(lines) + "\n"


def container_ports(spec: Obj) -> dict[str, int]:
    """Named ports of a container, and every number as itself."""
    ports: dict[str, int] = {}
    for port in spec.get("ports") or []:
        number = int(port["containerPort"])
        ports[str(number)] = number
        if port.get("name"):
            ports[port["name"]] = number
    return ports


@dataclass(frozen=True)
class Identity:
    """Who the container's process is, from the security contexts and the image's USER."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    no_new_privs: bool
    caps: tuple[str, ...]
    read_only_root: bool

    def setpriv(self) -> list[str]:
        groups = f"--groups={','.join(map(str, self.groups))}" if self.groups else "--clear-groups"
        argv = [SETPRIV, f"--reuid={self.uid}", f"--regid={self.gid}", groups]
        if self.no_new_privs:
            argv.append("--no-new-privs")
        bounding = ",".join(["-all", *(f"+{c}" for c in self.caps)])
        return [*argv, "--inh-caps=-all", f"--bounding-set={bounding}", "--"]


def identity(pod_sc: Obj, sc: Obj, image: Image, where: str) -> Identity:
    _refuse_unknown(pod_sc, _SECURITY_KEYS - {"allowPrivilegeEscalation", "capabilities"}, where)
    _refuse_unknown(sc, _SECURITY_KEYS - {"supplementalGroups", "fsGroup"}, where)
    if sc.get("privileged"):
        raise PodError(f"{where}: privileged containers not reproduced")
    user, _, group = image.user.partition(":")

    def numeric(value: str, what: str) -> int:
        if value == "root":
            return 0
        if not value.isdigit():
            raise PodError(f"{where}: image {what} {value!r} is not numeric")
        return int(value)

    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    uid = numeric(user, "USER") if uid is None else int(uid)
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) and uid == 0:
        raise PodError(f"{where}: runAsNonRoot and the container would run as uid 0")
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    if gid is None and group:
        gid = numeric(group, "USER group")
    if gid is None:
        # The runtime reads the image's /etc/passwd (a Debian one, like this machine's); a uid
        # it does not list gets gid 0.
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = 0
    groups = tuple(int(g) for g in pod_sc.get("supplementalGroups") or [])
    if pod_sc.get("fsGroup") is not None:  # kubelet adds it to every container's groups
        groups = (*groups, int(pod_sc["fsGroup"]))
    capabilities = sc.get("capabilities") or {}
    drop = {c.lower().removeprefix("cap_") for c in capabilities.get("drop") or []}
    add = [c.lower().removeprefix("cap_") for c in capabilities.get("add") or []]
    if not set(add) <= CAPS.keys():
        raise PodError(f"{where}: capabilities.add {add}: only the default set is reproduced")
    caps = () if "all" in drop else tuple(c for c in CAPS if c not in drop)
    return Identity(
        uid=uid,
        gid=int(gid),
        groups=groups,
        no_new_privs=sc.get("allowPrivilegeEscalation") is False,
        caps=(*caps, *add),
        read_only_root=bool(sc.get("readOnlyRootFilesystem")),
    )


@dataclass
class Container:
    """One started container: its spec, its ports by name and number, its process."""

    name: str
    spec: Obj
    ports: dict[str, int]
    process: LoggedProcess
    identity: Identity
    mounts: dict[str, bool]
    """Mount point (symlinks resolved) -> read-only, "/" included."""

    def verify(self) -> None:
        """Reads back from /proc what the process runs with, so that a harness step that did
        nothing (a setpriv flag, a remount) cannot pass for what the manifest asks."""
        proc = Path(f"/proc/{self.process.proc.pid}")
        status = dict(line.split(":\t", 1) for line in (proc / "status").read_text().splitlines())
        who = self.identity
        bounding = sum(1 << CAPS[c] for c in who.caps)
        assert status["Uid"].split() == [str(who.uid)] * 4, status["Uid"]
        assert status["Gid"].split() == [str(who.gid)] * 4, status["Gid"]
        assert sorted(map(int, status["Groups"].split())) == sorted(who.groups), status["Groups"]
        assert status["NoNewPrivs"].strip() == str(int(who.no_new_privs))
        assert int(status["CapBnd"], 16) == bounding, status["CapBnd"]
        assert int(status["CapEff"], 16) == (bounding if who.uid == 0 else 0), status["CapEff"]
        seen = {}
        for line in (proc / "mountinfo").read_text().splitlines():
            fields = line.split()
            seen[_unescape(fields[4])] = "ro" in fields[5].split(",")  # the last one is on top
        for point, read_only in self.mounts.items():
            assert seen.get(point) == read_only, (point, seen.get(point), read_only)

    def port(self, port: int | str) -> int | None:
        """A probe's port: a number, or the name of one of the container's ports."""
        return port if isinstance(port, int) else self.ports.get(port)

    def url(self, port: str) -> str:
        """``http://<pod IP>:<port>`` for a port name or number of the container."""
        return f"http://{pod_ip()}:{self.ports[port]}"

    def probe(self, kind: str) -> str | None:
        """Runs the ``kind`` probe once as kubelet would: None when it passes (or there is
        none), else why not."""
        probe = self.spec.get(kind)
        if probe is None:
            return None
        if "httpGet" in probe:
            import httpx

            get = probe["httpGet"]
            port = self.port(get["port"])
            if port is None:
                return f"{kind}: port {get['port']!r} is not a port of the container"
            scheme = get.get("scheme", "HTTP").lower()
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            url = f"{scheme}://{pod_ip()}:{port}{get.get('path', '/')}"
            try:
                status = httpx.get(
                    url, headers=headers, timeout=probe.get("timeoutSeconds", 1)
                ).status_code
            except httpx.HTTPError as exc:
                return f"{kind}: GET {url}: {exc!r}"
            return None if 200 <= status < 400 else f"{kind}: GET {url}: HTTP {status}"
        if "tcpSocket" in probe:
            port = self.port(probe["tcpSocket"]["port"])
            if port is None:
                return f"{kind}: port {probe['tcpSocket']['port']!r} is not a port of the container"
            try:
                socket.create_connection((pod_ip(), port), timeout=1).close()
            except OSError as exc:
                return f"{kind}: connect :{port}: {exc}"
            return None
        raise PodError(f"{self.name}: {kind} {sorted(probe)} not reproduced")


@dataclass
class Pod:
    name: str
    containers: list[Container]

    def container(self, name: str) -> Container:
        return next(c for c in self.containers if c.name == name)

    def stop(self) -> dict[str, int]:
        """SIGTERM to every container, as kubelet stops a pod; their exit statuses."""
        return {c.name: c.process.stop() for c in self.containers}


def _empty_dir(volume: Obj, pod_dir: Path, where: str, fs_group: int | None) -> Path:
    """As kubelet makes one on the node's disk: a new directory, mode 0777, so any uid the pod
    runs as can write it, owned by the pod's ``fsGroup`` with the setgid bit when it has one.
    A memory-backed one is not reproduced."""
    options = volume["emptyDir"] or {}
    if set(options) - {"sizeLimit"}:
        raise PodError(
            f"{where}: volume {volume['name']}: emptyDir {sorted(options)} not reproduced"
        )
    path = pod_dir / "volumes" / volume["name"]
    path.mkdir(parents=True)
    path.parent.chmod(0o755)
    if fs_group is None:
        path.chmod(0o777)
    else:
        os.chown(path, 0, fs_group)
        path.chmod(0o2777)
    return path


def start_pod(
    workload: Obj,
    manifests: Manifests,
    *,
    node: Node,
    cluster: Cluster,
    images: Mapping[str, Image],
    workdir: Path,
) -> Pod:
    """Starts every container of a Deployment's or DaemonSet's pod template on ``node``.
    ``images`` maps an image repository (the reference without its tag) to what it holds."""
    from testkit.stack import LoggedProcess

    kind, name = workload["kind"], workload["metadata"]["name"]
    template = workload["spec"]["template"]
    spec: Obj = template["spec"]
    where = f"{kind} {name}"
    _refuse_unknown(spec, _POD_KEYS, where)
    pod_name = f"{name}-7d4b9c8f6-x2k4q" if kind == "Deployment" else f"{name}-p8m2z"
    pod_dir = workdir / pod_name
    pod_dir.mkdir(parents=True)
    pod_dir.chmod(0o755)

    volumes: dict[str, Path] = {}
    for volume in spec.get("volumes") or []:
        if set(volume) == {"name", "emptyDir"}:
            fs_group = (spec.get("securityContext") or {}).get("fsGroup")
            volumes[volume["name"]] = _empty_dir(
                volume, pod_dir, where, None if fs_group is None else int(fs_group)
            )
            continue
        if set(volume) != {"name", "hostPath"}:
            raise PodError(
                f"{where}: volume {volume['name']}: only hostPath and emptyDir are reproduced"
            )
        host_path = volume["hostPath"]
        try:
            volumes[volume["name"]] = node.host_path(host_path["path"], host_path.get("type", ""))
        except PodError as exc:
            raise PodError(f"{where}: volume {volume['name']}: {exc}") from None

    account_name = spec.get("serviceAccountName", "default")
    account = manifests.get("ServiceAccount", account_name)
    if account is None and account_name != "default":
        raise PodError(f"{where}: serviceaccount {account_name} not found")
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        automount = (account or {}).get("automountServiceAccountToken", True)
    token_dir = pod_dir / "serviceaccount"
    if automount:
        token_dir.mkdir(mode=0o755)
        for file, text in (
            ("token", cluster.token),
            ("ca.crt", cluster.ca.read_text()),
            ("namespace", manifests.namespace),
        ):
            (token_dir / file).write_text(text)
            (token_dir / file).chmod(0o644)
    hosts = pod_dir / "hosts"
    hosts.write_text(hosts_file(manifests, pod_name))
    hosts.chmod(0o644)
    links = service_env(manifests, cluster, spec.get("enableServiceLinks", True))

    containers: list[Container] = []
    try:
        for c in spec["containers"]:
            cwhere = f"{where}: container {c['name']}"
            _refuse_unknown(c, _CONTAINER_KEYS, cwhere)
            repository = (
                c["image"].rsplit(":", 1)[0] if ":" in c["image"].split("/")[-1] else c["image"]
            )
            image = images.get(repository)
            if image is None:
                raise PodError(f"{cwhere}: no image built for {repository}")
            who = identity(
                spec.get("securityContext") or {}, c.get("securityContext") or {}, image, cwhere
            )

            env = dict(links)
            for var in c.get("env") or []:
                value = _env_value(var, manifests, node, cwhere, env)
                if value is not None:
                    env[var["name"]] = value
            process_env = {"PATH": f"{image.python}/bin:{BASE_PATH}", "LANG": "C.UTF-8"}
            process_env.update(image.env)
            process_env.update(env)
            process_env.setdefault("HOSTNAME", pod_name)
            try:
                home = pwd.getpwuid(who.uid).pw_dir
            except KeyError:
                home = "/"
            process_env.setdefault("HOME", home)

            entrypoint = list(image.entrypoint)
            command = c.get("command")
            args = c.get("args")
            if command is not None:
                argv = [*command, *(args or [])]
            else:
                argv = [*entrypoint, *(image.cmd if args is None else args)]
            argv = [_expand(a, env) for a in argv]

            mounts: list[Obj] = [{"type": "tmpfs", "target": "/run", "mode": "0755"}]
            read_only: list[str] = []
            writable = ["/etc/hosts"]
            pod_mounts: list[tuple[str, Path, bool]] = []
            for m in c.get("volumeMounts") or []:
                if m["name"] not in volumes:
                    raise PodError(f"{cwhere}: volumeMount {m['name']} names no volume")
                if _under(os.path.realpath(m["mountPath"]), ["/tmp"]):
                    raise PodError(f"{cwhere}: a mountPath under /tmp is not reproduced")
                source = volumes[m["name"]] / m.get("subPath", "")
                pod_mounts.append((m["mountPath"], source, bool(m.get("readOnly"))))
            if automount:
                pod_mounts.append((SERVICE_ACCOUNT_DIR, token_dir, True))
            # parents before children, as the runtime orders them
            for target, source, ro in sorted(pod_mounts, key=lambda m: m[0].count("/")):
                mounts.append({"type": "bind", "source": str(source), "target": target})
                (read_only if ro else writable).append(target)
            mounts.append({"type": "bind", "source": str(hosts), "target": "/etc/hosts"})
            # Last, as the sources above live under this machine's /tmp: the image's is empty.
            mounts.append({"type": "tmpfs", "target": "/tmp", "mode": "1777"})
            plan = {
                "mounts": mounts,
                "readOnlyRootFilesystem": who.read_only_root,
                "readOnly": read_only,
                "writable": writable,
                "workdir": image.workdir,
                "argv": [*who.setpriv(), *argv],
                "env": process_env,
            }
            plan_path = pod_dir / f"{c['name']}.json"
            plan_path.write_text(json.dumps(plan, indent=2))
            process = LoggedProcess(
                f"{pod_name}/{c['name']}",
                [str(plan_path)],
                {"PATH": BASE_PATH, "PYTHONPATH": str(REPO)},
                command=(
                    UNSHARE,
                    "--mount",
                    "--propagation",
                    "private",
                    sys.executable,
                    "-m",
                    __name__,
                ),
            )
            expected = {os.path.realpath(t): t in read_only for t, _, _ in pod_mounts}
            expected["/"] = who.read_only_root
            containers.append(Container(c["name"], c, container_ports(c), process, who, expected))
    except BaseException:
        for started in containers:
            started.process.stop()
        raise
    return Pod(pod_name, containers)


def _env_value(
    var: Obj, manifests: Manifests, node: Node, where: str, env: Mapping[str, str]
) -> str | None:
    """One ``env`` entry's value, or None when an optional reference is absent (kubelet then
    leaves the variable unset)."""
    if "valueFrom" not in var:
        return _expand(str(var.get("value", "")), env)
    source = var["valueFrom"]
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        value = manifests.secret_value(ref["name"], ref["key"])
        if value is None and not ref.get("optional"):
            raise PodError(f"{where}: {var['name']}: secret {ref['name']} has no key {ref['key']}")
        return value
    if "fieldRef" in source:
        path = source["fieldRef"]["fieldPath"]
        if path != "spec.nodeName":
            raise PodError(f"{where}: {var['name']}: fieldRef {path} not reproduced")
        return node.name
    raise PodError(f"{where}: {var['name']}: valueFrom {sorted(source)} not reproduced")


# -- inside the mount namespace --------------------------------------------------------------


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _mount_points() -> list[tuple[str, bool]]:
    """(mount point, writable) for every mount this namespace sees."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        points.append((_unescape(fields[4]), "rw" in fields[5].split(",")))
    return points


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _under(path: str, tops: Sequence[str]) -> bool:
    return any(path == top or path.startswith(top.rstrip("/") + "/") for top in tops)


def enter(plan: Obj) -> NoReturn:
    """Runs as root in a fresh private mount namespace: builds the container's view of the
    filesystem, then becomes the container's process through setpriv."""
    for mount in plan["mounts"]:
        target = Path(mount["target"])
        if mount["type"] == "tmpfs":
            _mount("-t", "tmpfs", "-o", f"mode={mount['mode']}", "tmpfs", str(target))
            continue
        if os.path.isdir(mount["source"]):
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        _mount("--bind", mount["source"], str(target))
    volumes = [os.path.realpath(t) for t in plan["readOnly"] + plan["writable"]]
    if plan["readOnlyRootFilesystem"]:
        for point, rw in _mount_points():
            if rw and not _under(point, ("/proc", "/sys", "/dev")) and point not in volumes:
                _mount("-o", "remount,bind,ro", point)
    for target in plan["readOnly"]:
        _mount("-o", "remount,bind,ro", target)
    os.chdir(plan["workdir"])
    os.execve(plan["argv"][0], plan["argv"], plan["env"])


if __name__ == "__main__":
    enter(json.loads(Path(sys.argv[1]).read_text()))
