"""Reads from the API server with the user's own credentials, for the commands that ask once
rather than watch: all Kubernetes API access stays in ``pulltrace.kube``, so the commands only
see parsed pods and one-line errors.

The ``kubernetes`` client is imported by the calls, never at import time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pulltrace.errors import SourceError
from pulltrace.kube.pods import Pod, parse_pod


class KubeApiError(SourceError):
    """Raised by ``preflight`` and ``PodLister.list`` when the API server refuses a read or
    cannot be reached: one line for the user."""


def preflight(api_client: Any, server: str, namespaces: Sequence[str] = ()) -> None:
    """One small list, so that missing RBAC or a dead API server is one clear line at once
    rather than watches retrying in the background."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    try:
        if namespaces:
            for ns in namespaces:
                core.list_namespaced_pod(ns, limit=1, _preload_content=False, _request_timeout=10)
        else:
            core.list_pod_for_all_namespaces(limit=1, _preload_content=False, _request_timeout=10)
    except ApiException as err:
        scope = ", ".join(namespaces) or "all namespaces"
        raise KubeApiError(
            f"cannot list pods ({scope}) on {server}: HTTP {err.status} {err.reason}"
        ) from None
    except Exception as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise KubeApiError(
            f"cannot reach the Kubernetes API server at {server}: {reason}"
        ) from None


class PodLister:
    """Lists the named pods (a missing one is skipped: not created yet) or those matching a
    label selector, in one namespace. Synchronous, like the client: call it in a thread."""

    def __init__(
        self, api_client: Any, namespace: str, names: Sequence[str] = (), selector: str = ""
    ) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.names = tuple(names)
        self.selector = selector

    def list(self) -> list[Pod]:
        from kubernetes.client.exceptions import ApiException

        ns = self.namespace
        try:
            if self.names:
                objs = []
                for name in self.names:
                    try:
                        resp = self.core.read_namespaced_pod(name, ns, _preload_content=False)
                    except ApiException as err:
                        if err.status == 404:
                            continue  # not created yet: keep waiting for it
                        raise
                    objs.append(json.loads(resp.data))
            else:
                resp = self.core.list_namespaced_pod(
                    ns, label_selector=self.selector or None, _preload_content=False
                )
                objs = json.loads(resp.data).get("items") or []
        except ApiException as err:
            raise KubeApiError(
                f"cannot list pods in {ns}: HTTP {err.status} {err.reason}"
            ) from None
        except Exception as err:
            raise KubeApiError(f"cannot list pods in {ns}: {' '.join(str(err).split())}") from None
        return [parse_pod(o) for o in objs]
