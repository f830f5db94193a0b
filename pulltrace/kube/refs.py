"""Image references in the one form the container runtime uses.

Kubelet passes the pod spec's reference to the runtime verbatim and containerd normalises it
(distribution/reference ``ParseNormalizedNamed`` + ``TagNameOnly``): ``nginx`` becomes
``docker.io/library/nginx:latest``. The agent, on the other hand, only sees containerd's
``distribution.source.<host>`` label, whose key has lost the registry port. Matching the two
needs both normalisations below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pulltrace.errors import PulltraceError

DEFAULT_DOMAIN = "docker.io"
_LEGACY_DEFAULT_DOMAIN = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
_MAX_NAME = 255

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN_RE = re.compile(rf"{_HOST}(?::[0-9]+)?")
_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}")
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")


class InvalidReference(PulltraceError, ValueError):
    """Raised by ``parse`` for a reference containerd would refuse to pull (empty, an image ID,
    a bad name, tag or digest); callers that only skip such images catch ``ValueError``."""


@dataclass(frozen=True, slots=True)
class ImageRef:
    domain: str
    """Registry host, with its port when the reference has one."""
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    @property
    def repo_key(self) -> str:
        """``<host without port>/<path>``: what the agent reports as ``repository``."""
        return f"{hostname(self.domain)}/{self.path}"

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.name}{tag}{digest}"


def hostname(domain: str) -> str:
    """The host without its port, as Go's ``url.URL.Hostname`` gives it to containerd."""
    if domain.startswith("["):
        return domain[1 : domain.find("]")]
    return domain.partition(":")[0]


def parse(reference: str) -> ImageRef:
    """Normalises like containerd: default registry, ``library/``, tag ``latest`` unless a
    digest pins the image. Raises InvalidReference where containerd would refuse the pull."""
    ref = reference.strip()
    if not ref:
        raise InvalidReference("empty image reference")
    if _IDENTIFIER_RE.fullmatch(ref):
        raise InvalidReference(f"{ref!r} is an image ID, not a reference")
    rest, at, digest = ref.partition("@")
    rest, colon, tag = _split_tag(rest)
    domain, path = _split_domain(rest)
    problem = _problem(domain, path, tag if colon else None, digest if at else None)
    if problem:
        raise InvalidReference(f"{reference!r}: {problem}")
    if not tag and not digest:
        tag = DEFAULT_TAG
    return ImageRef(domain, path, tag, digest)


def try_parse(reference: str) -> ImageRef | None:
    try:
        return parse(reference)
    except InvalidReference:
        return None


def normalize(reference: str) -> str:
    return str(parse(reference))


def repo_key(reference: str) -> str:
    """``<host without port>/<path>`` of a pod spec's reference."""
    return parse(reference).repo_key


def agent_repo_key(repository: str) -> str:
    """The agent's ``repository`` is already normalised; only a port, should one ever be
    there, must go, so that both sides of a match use the same key."""
    host, sep, path = repository.partition("/")
    return f"{hostname(host)}{sep}{path}"


def _split_tag(name: str) -> tuple[str, str, str]:
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        return name[:colon], ":", name[colon + 1 :]
    return name, "", ""


def _problem(domain: str, path: str, tag: str | None, digest: str | None) -> str:
    if not _DOMAIN_RE.fullmatch(domain):
        return "invalid registry host"
    if path.lower() != path:
        return "repository name must be lowercase"
    if not _PATH_RE.fullmatch(path):
        return "invalid repository name"
    if tag is not None and not _TAG_RE.fullmatch(tag):
        return "invalid tag"
    if digest is not None and not _DIGEST_RE.fullmatch(digest):
        return "invalid digest"
    if len(domain) + 1 + len(path) > _MAX_NAME:
        return "name too long"
    return ""


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, remainder = name.partition("/")
    is_domain = sep and (
        any(c in first for c in ".:") or first == "localhost" or first.lower() != first
    )
    if is_domain:
        domain, path = first, remainder
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == _LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    return domain, path
