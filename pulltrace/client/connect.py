"""Which source a command reads, decided once for ``watch``, ``ls`` and ``wait`` alike: the one
place that knows the kinds of source (``Plan.source`` builds it, ``resolve`` picks the kind).

Explicit flags win (``--demo``, ``--containerd``, ``--server``); otherwise, as kubectl would:
``PULLTRACE_SERVER``, then the current kubeconfig context, where the collector is reached
through the API server's service proxy, or, when it is not installed, the Kubernetes API alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import msgspec

from pulltrace.client.endpoint import Client, CollectorError, Endpoint, with_token
from pulltrace.client.kubeconfig import (
    DEFAULT_NAMESPACE,
    DEFAULT_PORT,
    DEFAULT_SERVICE,
    Cluster,
    load_cluster,
    proxy_endpoint,
)
from pulltrace.client.source import Source
from pulltrace.errors import SourceError

Kind = Literal["collector", "proxy", "api", "containerd", "demo"]
PROBE_TIMEOUT = 5.0


class ResolveError(SourceError):
    """Raised by ``resolve`` when the flags, environment and kubeconfig lead to no usable source
    (no cluster and no socket, a collector proxy that refuses, no containerd client)."""


class SourceArgs(msgspec.Struct, frozen=True, kw_only=True):
    server: str = ""
    token: str = ""
    kubeconfig: str | None = None
    context: str | None = None
    collector_namespace: str = DEFAULT_NAMESPACE
    collector_service: str = DEFAULT_SERVICE
    collector_port: str = DEFAULT_PORT
    containerd: str | None = None
    containerd_namespace: str = "k8s.io"
    demo: bool = False
    seed: int = 7


class Plan(msgspec.Struct, frozen=True):
    kind: Kind
    endpoint: Endpoint | None = None
    cluster: Cluster | None = None
    containerd: str = ""
    containerd_namespace: str = "k8s.io"
    seed: int = 7
    notice: str = ""
    """Said once to the user (stderr, or the TUI's status line): why this source, what it lacks."""

    def source(
        self, namespaces: Sequence[str] | None = None, *, node: str = "", sample: float = 1.0
    ) -> Source:
        """The source, scoped where it can filter at the origin: ``namespaces`` for the
        Kubernetes API's watches and a collector's listing (one namespace), ``node`` for a
        collector's listing. ``sample``: containerd's time between two polls."""
        scope = list(namespaces or [])
        if self.kind in ("collector", "proxy"):
            assert self.endpoint is not None
            from pulltrace.client.collector import CollectorSource

            context = self.cluster.context if self.cluster else ""
            return CollectorSource(self.endpoint, context, node=node, namespaces=scope)
        if self.kind == "api":
            from pulltrace.client.kubeapi import ApiOnlySource

            assert self.cluster is not None
            return ApiOnlySource(self.cluster, scope)
        if self.kind == "containerd":
            from pulltrace.client.containerd import ContainerdSource

            return ContainerdSource(self.containerd, self.containerd_namespace, sample)
        from pulltrace.client.demo import DemoSource

        return DemoSource(self.seed)


def resolve(args: SourceArgs) -> Plan:
    """Synchronous, and without asyncio, so that ``ls --server`` starts fast."""
    if args.demo:
        return Plan("demo", seed=args.seed)
    if args.containerd:
        return _containerd_plan(args.containerd, args.containerd_namespace)
    server = args.server or os.environ.get("PULLTRACE_SERVER", "")
    token = args.token or os.environ.get("PULLTRACE_TOKEN", "")
    if server:
        return Plan("collector", endpoint=with_token(Endpoint(server), token))
    import logging

    # The kubernetes client and our watches log retries as warnings; they must not scribble
    # over tables, the TUI or CI logs: the commands report what matters themselves.
    logging.getLogger().addHandler(logging.NullHandler())
    cluster = load_cluster(args.kubeconfig, args.context)  # a broken one: KubeConfigError
    if cluster is None:
        from pulltrace.agent.sockets import local_socket

        socket_path = local_socket()
        if socket_path:  # on a node: its own containerd
            return _containerd_plan(socket_path, args.containerd_namespace)
        raise ResolveError(
            "no collector and no cluster: pass --server URL, a kubeconfig (--kubeconfig, "
            "KUBECONFIG, ~/.kube/config), --containerd SOCKET, or --demo"
        )
    # No read token here: the API server authenticates the user and does not forward the
    # Authorization header, so a collector that demands one is reached with --server.
    endpoint = proxy_endpoint(
        cluster, args.collector_namespace, args.collector_service, args.collector_port
    )
    reason = _probe(endpoint, cluster)
    if reason is None:
        return Plan("proxy", endpoint=endpoint, cluster=cluster)
    from pulltrace.client.kubeapi import NOTICE

    return Plan("api", cluster=cluster, notice=f"{reason}; {NOTICE}")


def _containerd_plan(socket_path: str, namespace: str) -> Plan:
    from pulltrace.agent.sockets import MISSING_CLIENT, client_installed

    if not client_installed():
        raise ResolveError(MISSING_CLIENT)
    return Plan("containerd", containerd=socket_path, containerd_namespace=namespace)


def _probe(endpoint: Endpoint, cluster: Cluster) -> str | None:
    """None when the collector answers through the proxy, else why the API alone is used."""
    where = _service_name(endpoint)
    try:
        status = Client(endpoint).get("/healthz", deadline=PROBE_TIMEOUT).status
    except CollectorError as err:
        reason = str(err).partition(": ")[2] or str(err)
        raise ResolveError(
            f"cannot reach the Kubernetes API server at {cluster.server}: {reason}"
        ) from None
    if status == 200:
        return None
    if status == 401:
        raise ResolveError(
            f"the Kubernetes API server at {cluster.server} refused your credentials (401)"
        )
    if status == 403:
        return f"no permission to reach {where} through the API server (services/proxy)"
    if status == 404:
        return f"no collector service {where}"
    if status == 503:
        return f"collector {where} has no ready endpoints"
    raise ResolveError(f"collector {where} answered {status} through the API server's proxy")


def _service_name(endpoint: Endpoint) -> str:
    """``<namespace>/<service>`` out of a service-proxy URL, for messages."""
    parts = endpoint.base_url.split("/")
    try:
        namespace = parts[parts.index("namespaces") + 1]
        service = parts[parts.index("services") + 1].split(":")[0]
    except (ValueError, IndexError):
        return endpoint.base_url
    return f"{namespace}/{service}"
