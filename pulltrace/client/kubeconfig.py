"""The user's cluster, as kubectl finds it, and the collector behind its API server's proxy.

Going through ``/api/v1/namespaces/<ns>/services/<name>:<port>/proxy/`` means no port-forward
and no extra credentials: the API server checks the user's own ones (``services/proxy`` RBAC)
and streams the SSE response through unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pulltrace.client.collector import Endpoint

DEFAULT_NAMESPACE = "pulltrace"
DEFAULT_SERVICE = "pulltrace-collector"
DEFAULT_PORT = "http"


class KubeConfigError(Exception):
    """No usable cluster configuration: one line saying which and why."""


@dataclass(frozen=True)
class Cluster:
    context: str  # "" in a pod using its service account
    configuration: Any  # kubernetes.client.Configuration, for the kubernetes client itself

    @property
    def server(self) -> str:
        return str(self.configuration.host)


def load_cluster(kubeconfig: str | None = None, context: str | None = None) -> Cluster:
    """kubectl's order: ``--kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config``, then the pod's
    service account."""
    from kubernetes import client, config

    path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    configuration = client.Configuration()
    first = path.split(os.pathsep)[0]
    if not kubeconfig and not os.path.exists(first) and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException as err:
            raise KubeConfigError(f"in-cluster configuration unusable: {err}") from None
        return Cluster("", configuration)
    if not os.path.exists(first):
        raise KubeConfigError(f"no kubeconfig at {first} (use --kubeconfig or --server)")
    try:
        contexts, active = config.list_kube_config_contexts(config_file=path)
        chosen = context or (active or {}).get("name", "")
        if context and context not in {c["name"] for c in contexts or []}:
            raise KubeConfigError(f"context {context!r} not found in {path}")
        config.load_kube_config(
            config_file=path, context=chosen or None, client_configuration=configuration
        )
    except KubeConfigError:
        raise
    except Exception as err:  # the loader raises bare exceptions for broken files too
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise KubeConfigError(f"kubeconfig {path} unusable: {message}") from None
    return Cluster(chosen, configuration)


def proxy_endpoint(
    cluster: Cluster,
    namespace: str = DEFAULT_NAMESPACE,
    service: str = DEFAULT_SERVICE,
    port: str = DEFAULT_PORT,
) -> Endpoint:
    conf = cluster.configuration
    headers: dict[str, str] = {}
    token = conf.get_api_key_with_prefix("authorization") if conf.api_key else None
    if token:
        headers["Authorization"] = token
    cert = (conf.cert_file, conf.key_file) if conf.cert_file and conf.key_file else None
    verify: Any = conf.ssl_ca_cert or True
    if not conf.verify_ssl:
        verify = False
    base = (
        f"{cluster.server.rstrip('/')}/api/v1/namespaces/{namespace}"
        f"/services/{service}:{port}/proxy"
    )
    label = f"collector {namespace}/{service} via {cluster.context or 'in-cluster'}"
    return Endpoint(base, headers, verify, cert, label)
