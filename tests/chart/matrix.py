"""The value sets every chart test renders: each is `helm template` arguments, as a user types
them (--set keeps its own typing: `--set auth.agentToken=12345` is a number)."""

from __future__ import annotations

from typing import Any

EVERYTHING: dict[str, Any] = {
    "collector": {
        "image": {"digest": "sha256:" + "ab" * 32},
        "watchNamespaces": ["shop", "ml"],
        "historyTTL": "2h",
        "history": {"retention": "7d", "maxPulls": 5000},
        "persistence": {"enabled": True, "size": "5Gi", "storageClass": "fast"},
        "logLevel": "debug",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                            ]
                        }
                    ]
                }
            }
        },
        "priorityClassName": "system-cluster-critical",
        "podAnnotations": {"example.com/team": "platform"},
        "podLabels": {"example.com/cost": "ops"},
    },
    "agent": {
        "image": {"tag": "0.2.0", "pullPolicy": "Always"},
        "containerdSocket": "/var/run/custom/containerd.sock",
        "healthPort": 9108,
        "interval": "500ms",
        "stallTimeout": "2m",
        "priorityClassName": "system-node-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}},
        "podAnnotations": {"example.com/team": "platform"},
    },
    "auth": {"agentToken": 12345678, "readToken": "read-me"},
    "webhook": {"secret": "hook-me"},
    "service": {
        "type": "NodePort",
        "port": 80,
        "metricsPort": 9100,
        "annotations": {"example.com/lb": "internal"},
    },
    "rbac": {
        "viewers": {
            "users": ["alice"],
            "groups": ["devs"],
            "serviceAccounts": [{"name": "ci", "namespace": "builds"}],
        }
    },
    "networkPolicy": {
        "enabled": True,
        "apiFrom": [
            {"ipBlock": {"cidr": "10.0.0.0/24"}},
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ci"}}},
        ],
        "metricsFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
    },
    "serviceMonitor": {
        "enabled": True,
        "interval": "15s",
        "scrapeTimeout": "10s",
        "labels": {"release": "prometheus"},
    },
    "imagePullSecrets": [{"name": "regcred"}],
}


MATRIX: dict[str, list[str]] = {
    "defaults": [],
    "tokens": ["--set", "auth.agentToken=12345", "--set", "auth.readToken=r3ad-t0ken"],
    "existing-secret": ["--set", "auth.existingSecret=my-tokens"],
    "service-monitor": ["--set", "serviceMonitor.enabled=true"],
    "network-policy": [
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring",
    ],
    "watch-namespaces-list": ["--set", "collector.watchNamespaces={shop,ml}"],
    "watch-namespaces-string": ["--set", "collector.watchNamespaces=shop"],
    "agent-off": ["--set", "agent.enabled=false"],
    "custom-socket": ["--set", "agent.containerdSocket=/var/run/custom/containerd.sock"],
    "viewers": ["--set", "rbac.viewers.groups={devs}", "--set", "rbac.viewers.users={alice}"],
    "service-port-80": ["--set", "service.port=80"],
    "history-claim": [
        "--set",
        "collector.persistence.enabled=true",
        "--set",
        "collector.persistence.existingClaim=my-history",
        "--set",
        "webhook.secret=d1un-s3cret",
    ],
    "history-postgres": ["--set", "collector.database.existingSecret=pulltrace-db"],
}


NAMES = [*MATRIX, "everything"]  # "everything": EVERYTHING as a values file
