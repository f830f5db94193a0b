"""Which rows get the update badge and which statistics a pull's ETA uses: image references are
compared by canonical repository and tag, whatever form DIUN and the runtime give them in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pulltrace.model import ImageUpdate, PullStatus, Quantiles, StatsGroup
from pulltrace.tui.history import HistoryFacts, image_key

NOW = datetime(2026, 1, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ref", "key"),
    [
        ("nginx", ("docker.io/library/nginx", "")),
        ("nginx:1.27", ("docker.io/library/nginx", "1.27")),
        ("docker.io/nginx:1.27", ("docker.io/library/nginx", "1.27")),
        ("docker.io/library/nginx@sha256:abc", ("docker.io/library/nginx", "")),
        ("grafana/grafana:11.2.0", ("docker.io/grafana/grafana", "11.2.0")),
        ("ghcr.io/acme/api:v2@sha256:abc", ("ghcr.io/acme/api", "v2")),
        ("localhost:5000/app", ("localhost:5000/app", "")),
        ("registry:5000/team/app:1", ("registry:5000/team/app", "1")),
    ],
)
def test_image_key_spells_out_the_registry_as_runtimes_do(ref: str, key: tuple[str, str]) -> None:
    assert image_key(ref) == key


def update(image: str, acknowledged: bool = False) -> ImageUpdate:
    return ImageUpdate(image=image, received_at=NOW, acknowledged=acknowledged)


def pull(image_ref: str, repository: str = "") -> PullStatus:
    return PullStatus(id="p", node_name="n", image_ref=image_ref, repository=repository)


def test_a_pending_update_flags_pulls_of_its_tag_and_by_digest_not_other_tags() -> None:
    facts = HistoryFacts.of([update("docker.io/library/nginx:1.27.3")], [])
    assert facts.has_update(pull("nginx:1.27.3"))
    assert facts.has_update(pull("docker.io/library/nginx@sha256:abc"))
    assert facts.has_update(pull("", repository="docker.io/library/nginx"))
    assert not facts.has_update(pull("nginx:1.25"))
    assert not facts.has_update(pull("docker.io/library/redis:7.4"))
    assert not facts.has_update(pull(""))


def test_a_dismissed_update_flags_nothing() -> None:
    facts = HistoryFacts.of([update("nginx:1.27.3", acknowledged=True)], [])
    assert not facts.has_update(pull("nginx:1.27.3"))


def test_statistics_are_found_by_canonical_repository() -> None:
    q = Quantiles(p50=1.0, p95=2.0, max=3.0)
    group = StatsGroup(
        key="docker.io/library/nginx",
        count=3,
        failures=0,
        bytes=0,
        duration_seconds=q,
        average_bytes_per_sec=q,
    )
    facts = HistoryFacts.of([], [group])
    assert facts.group(pull("nginx@sha256:abc")) == group
    assert facts.group(pull("", repository="docker.io/library/nginx")) == group
    assert facts.group(pull("redis:7")) is None
    assert facts.group(pull("")) is None


@given(st.text(max_size=300))
def test_any_reference_has_a_key_and_flags_its_own_update(ref: str) -> None:
    assert image_key(ref)[0]
    if ref and "@" not in ref:
        assert HistoryFacts.of([update(ref)], []).has_update(pull(ref))
