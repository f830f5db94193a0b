"""What the TUI knows from the collector's history: pending image updates, and earlier pulls
per repository. Pure (no Textual, no I/O): the app's worker fetches, this answers per pull
whether its row gets the update badge and which statistics its ETA and detail screen use.

Image references are compared by their canonical repository (``nginx`` is
``docker.io/library/nginx``) and tag, because DIUN names images by tag while pulls are often
known by digest (``nginx@sha256:…``): a pull by digest is flagged by any update of its
repository, a pull by tag only by an update of that tag.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pulltrace.model import ImageUpdate, PullStatus, StatsGroup

DOCKER_HUB = "docker.io"


def image_key(ref: str) -> tuple[str, str]:
    """``(repository, tag)`` of an image reference, the repository with its registry spelled
    out as the container runtimes resolve it; the tag is empty for a digest-only reference."""
    name = ref.partition("@")[0]
    tag = ""
    colon, slash = name.rfind(":"), name.rfind("/")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    first, sep, rest = name.partition("/")
    if not sep or not ("." in first or ":" in first or first == "localhost"):
        name = f"{DOCKER_HUB}/{name}"
        first, rest = DOCKER_HUB, name.partition("/")[2]
    if first == DOCKER_HUB and "/" not in rest:
        name = f"{DOCKER_HUB}/library/{rest}"
    return name, tag


def pull_key(pull: PullStatus) -> tuple[str, str] | None:
    """The pull's image as ``image_key`` has it; ``None`` while it is not known."""
    ref = pull.image_ref or pull.repository
    return image_key(ref) if ref else None


@dataclass(frozen=True)
class HistoryFacts:
    """One fetch of updates and repository statistics. ``error`` is the last fetch's failure,
    shown where the facts are; the facts themselves are the last good ones."""

    updates: tuple[ImageUpdate, ...] = ()
    groups: dict[str, StatsGroup] = field(default_factory=dict)
    """By canonical repository."""
    error: str = ""
    _pending: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, updates: Iterable[ImageUpdate], groups: Iterable[StatsGroup]) -> HistoryFacts:
        kept = tuple(updates)
        pending: dict[str, set[str]] = {}
        for update in kept:
            if not update.acknowledged:
                repository, tag = image_key(update.image)
                pending.setdefault(repository, set()).add(tag)
        return cls(
            updates=kept,
            groups={image_key(g.key)[0]: g for g in groups},
            _pending={repo: frozenset(tags) for repo, tags in pending.items()},
        )

    def has_update(self, pull: PullStatus) -> bool:
        """Whether an unacknowledged update names the pull's image."""
        key = pull_key(pull)
        if key is None:
            return False
        tags = self._pending.get(key[0])
        if not tags:
            return False
        return not key[1] or key[1] in tags or "" in tags

    def group(self, pull: PullStatus) -> StatsGroup | None:
        """Earlier pulls of the pull's repository, if any finished."""
        key = pull_key(pull)
        return self.groups.get(key[0]) if key else None
