"""What the collector's memory limit has to cover, measured rather than guessed.

The real ``pulltrace collector`` runs in its own process with Kubernetes correlation on, against
an API server double (``testkit/kube/apiserver.py``, the one the tests use) that lists a 5 000-pod
cluster and 10 000 kubelet Events, while simulated agents (``bench/collector_load.py``'s) report
the pulls of 500 nodes. Then 256 event stream clients read everything for a while, and then 256
others connect that never read, until every one of them has overflowed its backlog bound and
been dropped for a resynchronisation. A twin collector gets the same API server, the same agents
and no client at all, over the same timeline, so that what the clients cost is the difference
between the two at the same moment, not mixed up with the event ring filling over time.

Run from the repository root (no root, no containerd, no cluster)::

    python -m bench.collector_memory [--nodes 500] [--pods 5000] [--events 10000] [--clients 256]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import multiprocessing
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import psutil

from bench.collector_load import (
    AGENT_PROCS,
    CLIENT_PROCS,
    LOOPBACK,
    BenchError,
    ClientStats,
    Collector,
    Image,
    MiB,
    Node,
    Window,
    agent_worker,
    catalogue,
    client_worker,
)
from testkit.kube import objects
from testkit.kube.apiserver import ApiServer

Obj = dict[str, Any]
SEED = 20260131
MAX_CLIENTS = 256
"""The collector's cap on event stream clients: the 257th gets a 503."""
SAMPLE = 0.1
"""Seconds between two RSS samples."""
SETTLE = 3.0
"""Seconds each stage is sampled once it has reached its state."""
IDLE = 3.0
WAIT = 60.0
"""An upper bound on things that take seconds (lists, connections); never a figure measured."""
ROUND = 16
"""The recommended limit is rounded up to a multiple of this many MiB."""
SIDECARS = (
    "docker.io/istio/proxyv2:1.22.3",
    "docker.io/fluent/fluent-bit:3.0.7",
    "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.12.0",
)
INIT_IMAGE = "docker.io/library/busybox:1.36.1"
NAMESPACES = tuple(f"team-{k:02d}" for k in range(24))
"""The catalogue's images are ``registry.example.com/team-NN/...``: one namespace per team."""

# -- the cluster's objects ------------------------------------------------------------------------
#
# Pods as the API server lists them: with managedFields (lists include them; kubectl hides
# them), owner references, the projected service account volume every pod gets, env, probes,
# resources and the default tolerations: about 9 KiB of JSON a pod, as in real clusters.


def _hex(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def _fields(value: object) -> object:
    """``fieldsV1`` for an object: what server-side apply records of who set which field."""
    if isinstance(value, dict):
        # Container statuses are an atomic list to server-side apply: one entry for the lot.
        return {f"f:{k}": {} if k.endswith("Statuses") else _fields(v) for k, v in value.items()}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out: Obj = {}
        for item in value:
            key = {k: item[k] for k in ("name", "type", "containerPort", "ip") if k in item}
            out[f"k:{json.dumps(key, separators=(',', ':'))}"] = _fields(item)
        return out
    return {}


def _container_spec(c: Obj, rng: random.Random) -> None:
    """What a Deployment's pod template adds to a container beyond its name and image; the
    sidecar gets resources and the token mount only."""
    cpu, mem = rng.choice((("100m", "128Mi"), ("250m", "256Mi"), ("500m", "512Mi"), ("1", "1Gi")))
    c["resources"] = {
        "limits": {"cpu": cpu, "memory": mem},
        "requests": {"cpu": cpu, "memory": mem},
    }
    c["volumeMounts"] = [
        {
            "name": "kube-api-access",
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            "readOnly": True,
        },
    ]
    if c["name"] != "app":
        return
    port = 8080
    c["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    c["env"] = [
        {
            "name": "POD_NAME",
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
        },
        {"name": "LOG_LEVEL", "value": "info"},
        {
            "name": "OTEL_EXPORTER_OTLP_ENDPOINT",
            "value": "http://otel-collector.observability:4317",
        },
    ]
    c["volumeMounts"].append({"name": "config", "mountPath": "/etc/app", "readOnly": True})
    probe = {
        "httpGet": {"path": "/healthz", "port": port, "scheme": "HTTP"},
        "initialDelaySeconds": 5,
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    c["readinessProbe"] = probe
    c["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }


def _enrich(pod: Obj, deploy: str, version: str, rng: random.Random) -> None:
    meta, spec = pod["metadata"], pod["spec"]
    template = _hex(deploy, version)[:10]
    meta["generateName"] = f"{deploy}-{template}-"
    meta["labels"] = {
        "app.kubernetes.io/name": deploy,
        "app.kubernetes.io/instance": deploy,
        "app.kubernetes.io/version": version,
        "app.kubernetes.io/component": "server",
        "app.kubernetes.io/part-of": meta["namespace"],
        "pod-template-hash": template,
        "security.istio.io/tlsMode": "istio",
    }
    meta["annotations"] = {
        "kubectl.kubernetes.io/restartedAt": "2026-01-01T11:00:00Z",
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "15090",
        "checksum/config": _hex(deploy, "config"),
        "istio.io/rev": "default",
    }
    meta["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": f"{deploy}-{template}",
            "uid": objects.uid_for("rs", deploy, template),
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    for c in spec["containers"]:
        _container_spec(c, rng)
    spec["volumes"] = [
        {"name": "config", "configMap": {"name": f"{deploy}-config", "defaultMode": 420}},
        {
            "name": "kube-api-access",
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {
                                        "apiVersion": "v1",
                                        "fieldPath": "metadata.namespace",
                                    },
                                }
                            ]
                        }
                    },
                ],
            },
        },
    ]
    spec["tolerations"] = [
        {
            "key": f"node.kubernetes.io/{t}",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        }
        for t in ("not-ready", "unreachable")
    ]
    spec["securityContext"] = {
        "runAsUser": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    spec["serviceAccountName"] = spec["serviceAccount"] = deploy
    status = pod["status"]
    node = int(spec["nodeName"].rsplit("-", 1)[1])
    status["hostIP"] = f"10.0.{node >> 8}.{node & 255}"
    status["hostIPs"] = [{"ip": status["hostIP"]}]
    status["podIP"] = f"10.{64 + (node >> 8)}.{node & 255}.{rng.randint(2, 250)}"
    status["podIPs"] = [{"ip": status["podIP"]}]
    status["qosClass"] = "Guaranteed"
    written = {
        "metadata": {
            k: meta[k] for k in ("generateName", "labels", "annotations", "ownerReferences")
        },
        "spec": spec,
    }
    meta["managedFields"] = [
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "v1",
            "time": meta["creationTimestamp"],
            "fieldsType": "FieldsV1",
            "fieldsV1": _fields(written),
        },
        {
            "manager": "kubelet",
            "operation": "Update",
            "apiVersion": "v1",
            "time": meta["creationTimestamp"],
            "fieldsType": "FieldsV1",
            "fieldsV1": _fields({"status": status}),
            "subresource": "status",
        },
    ]


@dataclass
class Cluster:
    pods: list[Obj]
    events: list[Obj]

    def sizes(self) -> tuple[float, float]:
        """Mean JSON bytes of a pod and of an event."""
        pod = sum(len(json.dumps(p)) for p in self.pods) / max(1, len(self.pods))
        event = sum(len(json.dumps(e)) for e in self.events) / max(1, len(self.events))
        return pod, event


def build_cluster(nodes: int, pods: int, events: int, images: list[Image]) -> Cluster:
    """Pods spread over the nodes: the ones the simulated agents start pulling for wait in
    ContainerCreating, 1 % are in ImagePullBackOff, 3 % are finished jobs, the rest run; half
    have a sidecar, a quarter an init container. Events are kubelet's about their images over
    the last hour (the API server's Event TTL): mostly "already present", else Pulling and
    Pulled, and Failed and BackOff for the pods that cannot pull."""
    rng = random.Random(SEED)
    now = datetime.now(UTC)
    waiting_for = [[pull.image for pull in Node(n, images, 0, 0.0).current] for n in range(nodes)]
    made: list[Obj] = []
    for k in range(pods):
        n = k % nodes
        node = f"node-{n:05d}"
        image = images[rng.randrange(len(images))]
        state = "running"
        slot = k // nodes
        if slot < len(waiting_for[n]):
            image, state = waiting_for[n][slot], "pulling"
        elif rng.random() < 0.01:
            state = "backoff"
        elif rng.random() < 0.03:
            state = "done"
        team = int(image.repository.split("/team-")[1][:2])
        version = f"v1.{rng.randint(0, 40)}.{rng.randint(0, 9)}"
        ref = f"{image.repository}:{version}"
        started = now - timedelta(seconds=rng.uniform(600, 30 * 86400))
        app_id = f"{image.repository}@{image.manifest_digest}"
        sidecar = SIDECARS[k % len(SIDECARS)]
        sidecar_id = f"{sidecar.split(':')[0]}@sha256:{_hex(sidecar)}"
        if state == "pulling":
            app_state, side_state = (
                objects.waiting("ContainerCreating"),
                objects.waiting("ContainerCreating"),
            )
            app_id = sidecar_id = ""
        elif state == "backoff":
            ref = f"{image.repository}:v9.9.9-missing"
            message = f'Back-off pulling image "{ref}"'
            app_state, app_id = objects.waiting("ImagePullBackOff", message), ""
            side_state = objects.running(started)
        elif state == "done":
            app_state = side_state = objects.terminated(started)
        else:
            app_state = side_state = objects.running(started)
        containers = [objects.C("app", ref, app_state, app_id)]
        if k % 2:
            containers.append(objects.C("proxy", sidecar, side_state, sidecar_id))
        init = []
        if k % 4 == 1:
            init_state = (
                objects.waiting("PodInitializing")
                if state == "pulling"
                else objects.terminated(started)
            )
            init_id = (
                "" if state == "pulling" else f"docker.io/library/busybox@sha256:{_hex(INIT_IMAGE)}"
            )
            init = [objects.C("init-config", INIT_IMAGE, init_state, init_id)]
        deploy = image.repository.rsplit("/", 1)[1]
        name = f"{deploy}-{_hex(deploy, version)[:10]}-{_hex(k)[:5]}"
        phase = {"running": "Running", "done": "Succeeded"}.get(state, "Pending")
        pod = objects.pod(name, node, containers, init, namespace=NAMESPACES[team], phase=phase)
        pod["metadata"]["creationTimestamp"] = objects.ts(started)
        _enrich(pod, deploy, version, rng)
        made.append(pod)
    return Cluster(made, _events(made, events, now, rng))


def _events(pods: list[Obj], count: int, now: datetime, rng: random.Random) -> list[Obj]:
    out: list[Obj] = []
    names: set[str] = set()
    k = 0
    while pods and len(out) < count and k < 10 * count:
        pod = pods[k % len(pods)]
        k += 1
        containers = pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
        c = containers[(k // len(pods)) % len(containers)]["name"]
        when = now - timedelta(seconds=rng.uniform(100, 3600))
        reason = pod["status"]["containerStatuses"][0]["state"].get("waiting", {}).get("reason")
        if reason == "ContainerCreating":
            made = [objects.pulling(pod, now - timedelta(seconds=rng.uniform(1, 30)), c)]
        elif reason == "ImagePullBackOff" and c == "app":
            made = [objects.failed(pod, when, container=c), objects.backoff(pod, when, container=c)]
        elif rng.random() < 0.6:
            made = [objects.already_present(pod, when, c)]
        else:
            took = rng.uniform(1, 90)
            made = [
                objects.pulling(pod, when, c),
                objects.pulled(
                    pod, when + timedelta(seconds=took), took, took + rng.uniform(0, 5), container=c
                ),
            ]
        for event in made:
            event["metadata"]["managedFields"] = [
                {
                    "manager": "kubelet",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": event["lastTimestamp"],
                    "fieldsType": "FieldsV1",
                    "fieldsV1": _fields(
                        {
                            name: event[name]
                            for name in (
                                "count",
                                "firstTimestamp",
                                "involvedObject",
                                "lastTimestamp",
                                "message",
                                "reason",
                                "source",
                                "type",
                            )
                        }
                    ),
                }
            ]
            if event["metadata"]["name"] not in names:
                names.add(event["metadata"]["name"])
                out.append(event)
    return out[:count]


# -- measuring ------------------------------------------------------------------------------------


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) * 1024
    return values


def send_queues(port: int, peers: frozenset[int]) -> tuple[int, int]:
    """Bytes in the kernel's send queues of the collector's connections on ``port`` to the
    ``peers`` ports (to any, when empty), and how many connections have any: memory outside the
    process's RSS that cgroup v2 charges to the pod."""
    total = count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
        queued = int(queues.split(":")[0], 16)
        if state != "01" or not queued or int(local.rsplit(":", 1)[1], 16) != port:
            continue
        if not peers or int(remote.rsplit(":", 1)[1], 16) in peers:
            total += queued
            count += 1
    return total, count


@dataclass
class Stage:
    name: str
    began: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    start: dict[str, int] = field(default_factory=dict)
    """VmRSS when the stage began, per process."""
    rss: dict[str, int] = field(default_factory=dict)
    """The largest VmRSS sampled during the stage, per process."""
    hwm: dict[str, int] = field(default_factory=dict)
    """VmHWM (the lifetime peak) at the end of the stage, per process."""
    send_queue: int = 0
    connections: int = 0
    note: str = ""

    def growth(self, name: str) -> int:
        return self.rss[name] - self.start[name]

    @property
    def excess(self) -> int:
        """How much more the collector grew than its twin: what the stage's clients cost, or
        in a stage without any, the noise of these figures."""
        return self.growth("collector") - self.growth("twin")


class Sampler:
    """Samples the processes' RSS every ``SAMPLE`` seconds in a thread, into the current stage."""

    def __init__(self, pids: dict[str, int], port: int) -> None:
        self.pids = pids
        self.port = port
        self.peers: frozenset[int] = frozenset()
        """The client ports whose connections' send queues count; all when empty."""
        self.stages: list[Stage] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stage(self, name: str) -> Stage:
        """Ends the current stage (its VmHWM is read now) and starts the next one."""
        with self._lock:
            self._close()
            stage = Stage(name)
            self._sample(stage)
            stage.start = dict(stage.rss)
            self.stages.append(stage)
            return stage

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self.stages:
            current = self.stages[-1]
            self._sample(current)
            current.seconds = time.monotonic() - current.began
            current.hwm = {name: _status(pid)["VmHWM"] for name, pid in self.pids.items()}

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE):
            with self._lock:
                if self.stages:
                    self._sample(self.stages[-1])

    def _sample(self, stage: Stage) -> None:
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                rss = _status(pid)["VmRSS"]
                stage.rss[name] = max(stage.rss.get(name, 0), rss)
        queued, connections = send_queues(self.port, self.peers)
        if queued >= stage.send_queue:
            stage.send_queue, stage.connections = queued, connections


def floor_rss() -> int:
    """The peer: an interpreter that has imported what the collector runs on, and nothing else."""
    code = (
        "import pulltrace.collector.server, pulltrace.kube.correlator, kubernetes.client\n"
        "from pathlib import Path\n"
        "print(next(l.split()[1] for l in Path('/proc/self/status').read_text().splitlines()"
        " if l.startswith('VmHWM:')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT, check=False
    )
    if out.returncode != 0:
        raise BenchError(f"the import floor failed: {out.stderr.strip().splitlines()[-1:]}")
    return int(out.stdout) * 1024


def metrics(port: int) -> dict[str, float]:
    """The collector's Prometheus figures, by name with labels."""
    text = httpx.get(f"http://{LOOPBACK}:{port}/metrics", timeout=WAIT).text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def wait_until(check: Any, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(0.2)


def ready(port: int) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"http://{LOOPBACK}:{port}/readyz", timeout=5).status_code == 200
    return False


def stall(port: int, count: int, gzip: bool, mss: int) -> list[socket.socket]:
    """Event stream clients that send their request and never read a byte, like a
    ``pulltrace watch`` that was suspended (Ctrl-Z) or whose network stopped.

    They announce an Ethernet-sized MSS, so that the kernel sizes the collector's send buffer
    as it would for a peer across a network: on loopback's 64 KiB segments it grows to
    ``tcp_wmem``'s maximum and swallows the writes that would otherwise wait in the collector."""
    encoding = "Accept-Encoding: gzip\r\n" if gzip else ""
    request = (
        f"GET /api/v1/events HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
        f"Accept: text/event-stream\r\n{encoding}\r\n"
    ).encode()
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sockets.append(sock)
        if mss:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        sock.settimeout(WAIT)
        sock.connect((LOOPBACK, port))
        sock.sendall(request)
    return sockets


@contextlib.contextmanager
def processes() -> Iterator[list[multiprocessing.process.BaseProcess]]:
    procs: list[multiprocessing.process.BaseProcess] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join()


# -- one run -------------------------------------------------------------------------------------


@dataclass
class Result:
    stages: list[Stage]
    floor: int
    pod_bytes: float
    event_bytes: float
    accepted: dict[str, float]
    """Agent reports each collector accepted: the two must have had the same load."""
    stalled_seconds: float
    resyncs: int
    reading: ClientStats


def run(args: argparse.Namespace, logdir: Path) -> Result:
    images = catalogue()
    print("building the cluster's objects ...", file=sys.stderr)
    cluster = build_cluster(args.nodes, args.pods, args.events, images)
    pod_bytes, event_bytes = cluster.sizes()
    floor = floor_rss()
    ctx = multiprocessing.get_context("spawn")
    with ApiServer() as api, contextlib.ExitStack() as stack:
        for obj in cluster.pods + cluster.events:
            api.add(obj)
        del cluster
        kubeconfig = api.kubeconfig(logdir / "kubeconfig")
        with api.outage():
            # Lists are refused until the idle figures are taken, as when the API server is
            # slow to answer a starting collector.
            main = Collector(logdir, kubeconfig, "collector")
            stack.callback(main.stop)
            twin = Collector(logdir, kubeconfig, "twin")
            stack.callback(twin.stop)
            sampler = Sampler({"collector": main.proc.pid, "twin": twin.proc.pid}, main.port)
            sampler.start()
            stack.callback(sampler.stop)
            print("idle ...", file=sys.stderr)
            sampler.stage("idle, Kubernetes lists refused")
            time.sleep(IDLE)
        sampler.stage(f"+ {args.pods} pods, {args.events} events listed")
        wait_until(lambda: ready(main.port) and ready(twin.port), "the collectors' lists")
        time.sleep(SETTLE)

        sampler.stage("+ relist after 410 Gone")
        print("relisting ...", file=sys.stderr)
        lists = len(api.lists("pods")), len(api.lists("events"))
        with api.outage():
            # The watches are cut while the cluster moves on and etcd compacts: they come back
            # with a version that is gone, get 410 and list everything again.
            api.add(_scheduled())
            compacted = api.compact()
        wait_until(lambda: _relisted(api, lists, compacted), "the collectors' relists")
        time.sleep(SETTLE)

        with processes() as procs:
            print(f"{args.nodes} nodes' agents ...", file=sys.stderr)
            sampler.stage(f"+ {args.nodes} nodes' agents, {args.agents:g} s")
            t0 = time.time() + 1
            epoch_ms = int(t0) * 1000
            for port in (main.port, twin.port):
                window = Window(port=port, t0=t0, begin=t0, end=t0 + 86400, epoch_ms=epoch_ms)
                for k in range(AGENT_PROCS):
                    # They run until killed, so their figures are never read.
                    _, send = ctx.Pipe(duplex=False)
                    numbers = range(k, args.nodes, AGENT_PROCS)
                    procs.append(ctx.Process(target=agent_worker, args=(numbers, window, send)))
                    procs[-1].start()
            time.sleep(1 + args.agents)

            print(f"{args.clients} reading clients ...", file=sys.stderr)
            sampler.stage(f"+ {args.clients} reading clients (gzip), {args.reading:g} s")
            reading = _read(ctx, main, args.clients, args.reading, epoch_ms, procs)
            wait_until(lambda: _clients(main) == 0, "the reading clients to be gone")

            print(f"{args.clients} stalled clients ...", file=sys.stderr)
            encoding = "gzip" if args.stalled_gzip else "plain"
            stage = sampler.stage(f"{args.clients} stalled clients ({encoding}) instead")
            start = time.monotonic()
            before = _resyncs(main)
            stalled = stall(main.port, args.clients, args.stalled_gzip, args.mss)
            sampler.peers = frozenset(sock.getsockname()[1] for sock in stalled)
            try:
                wait_until(lambda: _clients(main) >= args.clients, "the stalled clients")
                with contextlib.suppress(BenchError):
                    wait_until(
                        lambda: _resyncs(main) - before >= args.clients,
                        "the stalled clients' bound",
                        args.stall_timeout,
                    )
                stalled_seconds = time.monotonic() - start
                resyncs = _resyncs(main) - before
                if resyncs < args.clients:
                    stage.note = (
                        f"only {resyncs} of {args.clients} reached their bound in "
                        f"{args.stall_timeout:g} s"
                    )
                time.sleep(SETTLE)
            finally:
                for sock in stalled:
                    sock.close()
            accepted = {
                name: metrics(c.metrics_port).get(
                    'pulltrace_agent_reports_total{result="accepted"}', 0
                )
                for name, c in (("collector", main), ("twin", twin))
            }
        sampler.stop()
        for c in (main, twin):
            if c.proc.poll() is not None:
                raise BenchError(f"a collector exited during the run: {c.tail()}")
    return Result(
        stages=sampler.stages,
        floor=floor,
        pod_bytes=pod_bytes,
        event_bytes=event_bytes,
        accepted=accepted,
        stalled_seconds=stalled_seconds,
        resyncs=resyncs,
        reading=reading,
    )


def _scheduled() -> Obj:
    """An Event the collectors do not watch for (the scheduler's), to move the version on."""
    return {
        "kind": "Event",
        "metadata": {"name": f"relist.{time.time_ns():x}", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "relist"},
        "reason": "Scheduled",
        "message": "Successfully assigned default/relist to node-00000",
        "source": {"component": "default-scheduler"},
        "type": "Normal",
    }


def _relisted(api: ApiServer, lists: tuple[int, int], compacted: int) -> bool:
    """Both collectors have listed pods and events again and watch from the new version."""
    if len(api.lists("pods")) < lists[0] + 2 or len(api.lists("events")) < lists[1] + 2:
        return False
    return all(
        sum(int(r.query.get("resourceVersion") or 0) >= compacted for r in api.watches(resource))
        >= 2
        for resource in ("pods", "events")
    )


def _clients(c: Collector) -> float:
    return metrics(c.metrics_port).get("pulltrace_sse_clients_active", 0)


def _resyncs(c: Collector) -> int:
    return int(metrics(c.metrics_port).get("pulltrace_sse_resyncs_total", 0))


def _read(
    ctx: Any, main: Collector, clients: int, seconds: float, epoch_ms: int, procs: list[Any]
) -> ClientStats:
    """``bench/collector_load.py``'s clients: they read every byte, as ``pulltrace watch``."""
    now = time.time()
    window = Window(port=main.port, t0=now, begin=now, end=now + seconds, epoch_ms=epoch_ms)
    pipes: list[Connection] = []
    share = -(-clients // CLIENT_PROCS)
    for first in range(0, clients, share):
        receive, send = ctx.Pipe(duplex=False)
        count = min(share, clients - first)
        procs.append(ctx.Process(target=client_worker, args=(first, count, window, True, send)))
        procs[-1].start()
        pipes.append(receive)
    for pipe in pipes:
        message = _receive(pipe, WAIT)
        if message != "ready":
            raise BenchError(str(message))
    stats = ClientStats()
    for pipe in pipes:
        message = _receive(pipe, seconds + WAIT)
        if not isinstance(message, ClientStats):
            raise BenchError(str(message))
        stats.merge(message)
    return stats


def _receive(pipe: Connection, timeout: float) -> object:
    if not pipe.poll(timeout):
        raise BenchError("the reading clients did not answer")
    return pipe.recv()


# -- the report ----------------------------------------------------------------------------------


def report(result: Result, args: argparse.Namespace) -> None:
    def mib(n: float) -> str:
        return f"{n / MiB:.0f} MiB"

    stages = result.stages
    reading, stalled = stages[-2], stages[-1]
    print(
        f"cluster: {args.pods} pods (mean {result.pod_bytes / 1024:.1f} KiB of JSON), "
        f"{args.events} kubelet Events (mean {result.event_bytes / 1024:.1f} KiB), "
        f"{args.nodes} nodes' agents reporting every 2 s"
    )
    print(f"peer: an interpreter that has only imported the collector: {mib(result.floor)} RSS\n")
    print(
        "RSS, the largest sampled in each stage; the twin has the same cluster and agents and no "
        "client"
    )
    header = ("stage", "seconds", "collector", "twin", "grew more than twin", "collector VmHWM")
    rows = [header] + [
        (
            s.name,
            f"{s.seconds:.0f}",
            mib(s.rss["collector"]),
            mib(s.rss["twin"]),
            f"{s.excess / MiB:+.0f} MiB",
            mib(s.hwm["collector"]),
        )
        for s in stages
    ]
    widths = [max(len(r[k]) for r in rows) for k in range(len(header))]
    for row in rows:
        cells = zip(row[1:], widths[1:], strict=True)
        print(f"{row[0]:<{widths[0]}}" + "".join(f"   {c:>{w}}" for c, w in cells))
    noise = max(abs(s.excess) for s in stages[:-2])
    print(
        f"without clients, the two grew apart by up to {mib(noise)} in a stage: the noise of "
        "these figures"
    )
    for s in stages:
        if s.note:
            print(f"NOTE ({s.name}): {s.note}")
    events = result.reading.events
    print(
        f"\nreading clients: {sum(events) / max(1, len(events)):.0f} events each, "
        f"{result.reading.gaps} lost, {result.reading.resyncs} resyncs; "
        f"{reading.excess / args.clients / 1024:.0f} KiB of RSS per client"
    )
    print(
        f"stalled clients: {result.resyncs} of {args.clients} overflowed their backlog bound in "
        f"{result.stalled_seconds:.0f} s; {stalled.excess / args.clients / 1024:.0f} KiB of RSS "
        f"per client, and {stalled.send_queue / max(1, stalled.connections) / 1024:.0f} KiB in "
        f"the kernel's send queue ({mib(stalled.send_queue)} over {stalled.connections} "
        "connections, outside the RSS)"
    )
    accepted = result.accepted
    print(
        f"agent reports accepted: collector {accepted['collector']:.0f}, "
        f"twin {accepted['twin']:.0f}"
    )
    peak_stage = max(stages, key=lambda s: s.hwm["collector"])
    peak = peak_stage.hwm["collector"]
    kernel = max(s.send_queue for s in stages)
    hwms = [s.hwm["collector"] / MiB for s in stages]
    rises = [
        f"{s.name.split(',')[0].removeprefix('+ ')} {after - before:+.0f}"
        for s, before, after in zip(stages, [0.0, *hwms], hwms, strict=False)
        if after - before >= 1
    ]
    limit = math.ceil((peak + kernel) * (1 + args.headroom) / MiB / ROUND) * ROUND
    print(
        f"\nrecommended memory limit: {limit}Mi\n"
        f"  = ({mib(peak)}, the collector's lifetime peak RSS (VmHWM), reached in "
        f'"{peak_stage.name}"\n'
        f"  + {mib(kernel)} of kernel send buffers, which cgroup v2 charges to the pod)"
        f" x {1 + args.headroom:g}, rounded up to {ROUND} Mi.\n"
        f"  The peak rose stage by stage (MiB): {'; '.join(rises)}.\n"
        f"  The {100 * args.headroom:.0f} % is for a denser cluster, a busier Event history "
        f"and the allocator ({mib(noise)} apart between twins here)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500, help="agents reporting (default 500)")
    parser.add_argument("--pods", type=int, default=5000, help="pods listed (default 5000)")
    parser.add_argument(
        "--events", type=int, default=10000, help="kubelet Events listed (default 10000)"
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=MAX_CLIENTS,
        help=f"event stream clients, reading then stalled (default and most {MAX_CLIENTS})",
    )
    parser.add_argument(
        "--agents", type=float, default=10.0, help="seconds of agents alone (default 10)"
    )
    parser.add_argument(
        "--reading", type=float, default=15.0, help="seconds of reading clients (default 15)"
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for every stalled client to overflow its bound (default 120)",
    )
    parser.add_argument(
        "--stalled-gzip",
        action="store_true",
        help="the stalled clients ask for gzip, which fills the bound ten times slower",
    )
    parser.add_argument(
        "--mss",
        type=int,
        default=1448,
        help="the MSS the stalled clients announce (default 1448, Ethernet's; 0: loopback's)",
    )
    parser.add_argument(
        "--headroom", type=float, default=0.25, help="on top of the peak (default 0.25)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.nodes <= 0xFFFF:
        parser.error("--nodes: between 1 and 65535")
    if not (0 <= args.pods <= 200_000 and 0 <= args.events <= 400_000):
        parser.error("--pods: at most 200000; --events: at most 400000")
    if args.mss and not 536 <= args.mss <= 65495:
        parser.error("--mss: 0 or between 536 and 65495")
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients: between 1 and {MAX_CLIENTS}, the collector's cap")
    if min(args.agents, args.reading, args.stall_timeout) < 1 or not 0 <= args.headroom <= 4:
        parser.error("durations: at least 1 s; --headroom: between 0 and 4")
    with tempfile.TemporaryDirectory(prefix="collector-memory-") as tmp:
        try:
            result = run(args, Path(tmp))
        except (BenchError, OSError, psutil.Error, httpx.HTTPError) as err:
            print(f"collector_memory: infrastructure failure: {err}", file=sys.stderr)
            return 1
    report(result, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
