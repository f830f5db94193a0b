"""The user's cluster, as kubectl finds it, and the collector behind its API server's proxy.

Going through ``/api/v1/namespaces/<ns>/services/<name>:<port>/proxy/`` means no port-forward
and no extra credentials: the API server checks the user's own ones (``services/proxy`` RBAC)
and streams the SSE response through unchanged.
"""

from __future__ import annotations

from typing import Any

import msgspec

from pulltrace.client.endpoint import Endpoint

DEFAULT_NAMESPACE = "pulltrace"
DEFAULT_SERVICE = "pulltrace-collector"
DEFAULT_PORT = "http"


class Cluster(msgspec.Struct, frozen=True):
    context: str  # "" in a pod using its service account
    api_client: Any  # kubernetes.client.ApiClient, for list/watch with the kubernetes client

    @property
    def configuration(self) -> Any:
        return self.api_client.configuration

    @property
    def server(self) -> str:
        return str(self.configuration.host)


def load_cluster(kubeconfig: str | None = None, context: str | None = None) -> Cluster | None:
    """The cluster kubectl would talk to, or None when there is no configuration at all.

    Raises pulltrace.kube.config.KubeConfigError (one line) for a broken one.
    """
    from pulltrace.kube.config import current_context, load_api_client

    api_client = load_api_client(kubeconfig, context)
    if api_client is None:
        return None
    return Cluster(context or current_context(kubeconfig), api_client)


def proxy_endpoint(
    cluster: Cluster,
    namespace: str = DEFAULT_NAMESPACE,
    service: str = DEFAULT_SERVICE,
    port: str = DEFAULT_PORT,
) -> Endpoint:
    conf = cluster.configuration
    # The client's own auth settings: bearer tokens (refreshed by exec plugins) and basic auth.
    headers = {
        str(s["key"]): str(s["value"])
        for s in conf.auth_settings().values()
        if s.get("in") == "header" and s.get("value")
    }
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
