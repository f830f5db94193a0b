"""Finding the cluster the way kubectl and in-cluster clients do: the one place that reads
kubeconfig files, for the collector's watches and for the clients (``watch``, ``ls``, ``wait``).

The ``kubernetes`` client is imported inside the functions, so that importing this module costs
nothing to commands that never talk to an API server.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from pulltrace.errors import SourceError

log = logging.getLogger("pulltrace.kube")


class KubeConfigError(SourceError):
    """Raised by ``load_api_client`` for a kubeconfig that exists but cannot be used (missing
    named file, bad YAML or schema, a failing exec plugin): one line for the user."""


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any | None:
    """In-cluster service account first, unless a kubeconfig or context is asked for; then
    ``KUBECONFIG`` (a path list, as kubectl reads it) or ``~/.kube/config``."""
    from kubernetes import client, config

    cfg = client.Configuration()
    if kubeconfig is None and context is None and _in_cluster():
        try:
            config.load_incluster_config(client_configuration=cfg)
            return client.ApiClient(cfg)
        except config.ConfigException as exc:
            log.warning("in-cluster configuration unusable (%s), trying kubeconfig", exc)
    if kubeconfig:
        candidates = [kubeconfig]
    else:
        env = os.environ.get("KUBECONFIG", "")
        candidates = [p for p in env.split(os.pathsep) if p] if env else ["~/.kube/config"]
    files = [p for p in (os.path.expanduser(c) for c in candidates) if os.path.isfile(p)]
    if not files:
        if kubeconfig:
            raise KubeConfigError(f"kubeconfig {kubeconfig}: no such file")
        return None
    where = os.pathsep.join(files)
    try:
        config.load_kube_config(
            config_file=where, context=context, client_configuration=cfg, persist_config=False
        )
    except (TypeError, AttributeError, KeyError, IndexError) as exc:
        # The client walks the document assuming kubeconfig's shape.
        raise KubeConfigError(f"kubeconfig {where}: not a kubeconfig ({_one_line(exc)})") from None
    except Exception as exc:  # YAML, schema, exec plugins, certificates: all one line
        raise KubeConfigError(f"kubeconfig {where}: {_one_line(exc)}") from None
    return client.ApiClient(cfg)


def _in_cluster() -> bool:
    env = os.environ
    return bool(env.get("KUBERNETES_SERVICE_HOST") and env.get("KUBERNETES_SERVICE_PORT"))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def current_context(kubeconfig: str | None) -> str:
    """The name of the kubeconfig's current context, "" in a pod (or when there is none): only
    a label for headers, so a file the loader accepted but that lists no contexts is not an
    error."""
    from kubernetes import config

    path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    first = os.path.expanduser(path.split(os.pathsep)[0])
    if not os.path.isfile(first):
        return ""  # in-cluster
    try:
        _, active = config.list_kube_config_contexts(config_file=first)
    except Exception:  # the loader already accepted the file; a name is only for the header
        return ""
    return str((active or {}).get("name", ""))


def current_namespace(kubeconfig: str | None) -> str:
    """kubectl's default namespace: the context's, else ``default``."""
    from kubernetes import config

    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except Exception:  # in-cluster, or no kubeconfig file: kubectl's fallback
        return "default"
    return str(((active or {}).get("context") or {}).get("namespace") or "default")


MAX_KUBECONFIG_BYTES = 4 * 1024 * 1024
MAX_CONTEXTS = 1000


def context_names(kubeconfig: str | None) -> list[str]:
    """The context names of the kubeconfig files kubectl would merge (``--kubeconfig``, else
    ``KUBECONFIG``'s path list, else ``~/.kube/config``), for shell completion of
    ``--context``. Read with PyYAML rather than the kubernetes client, whose import alone
    takes longer than a shell should wait for a tab; unreadable files give no names."""
    import yaml  # type: ignore[import-untyped]  # no stubs; kubernetes depends on PyYAML

    env = os.environ.get("KUBECONFIG", "")
    paths = [kubeconfig] if kubeconfig else [p for p in env.split(os.pathsep) if p]
    names: dict[str, None] = {}
    for path in paths or ["~/.kube/config"]:
        try:
            with open(os.path.expanduser(path), "rb") as f:
                text = f.read(MAX_KUBECONFIG_BYTES + 1)
            if len(text) > MAX_KUBECONFIG_BYTES:
                continue
            document = yaml.safe_load(text)
        except (OSError, yaml.YAMLError):
            continue
        contexts = document.get("contexts") if isinstance(document, dict) else None
        for entry in contexts if isinstance(contexts, list) else []:
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and name.isprintable() and len(names) < MAX_CONTEXTS:
                names.setdefault(name, None)
    return list(names)
