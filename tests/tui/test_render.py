"""Cells are plain data, so every one is checked here without a terminal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pulltrace import render
from pulltrace.model import LayerStatus, PodRef, PullStatus
from pulltrace.tui.columns import CHROME, PADDING, layout, row_cells

T0 = datetime(2026, 1, 15, 9, 40, tzinfo=UTC)
MiB = 1024 * 1024


def pull(**kw: object) -> PullStatus:
    base: dict[str, object] = {
        "id": "x",
        "node_name": "worker-01",
        "image_ref": "ghcr.io/acme/checkout-api:v2.14.1",
        "phase": "pulling",
        "total_bytes": 200 * MiB,
        "downloaded_bytes": 50 * MiB,
        "cached_bytes": 50 * MiB,
        "percent": 50.0,
        "bytes_per_sec": 5 * MiB,
        "eta_seconds": 20.0,
        "started_at": T0,
        "total_known": True,
    }
    base.update(kw)
    return PullStatus(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ref", "parts"),
    [
        ("docker.io/library/nginx:1.27", ("docker.io", "library/nginx", ":1.27")),
        ("nginx", ("", "nginx", "")),
        ("localhost:5000/app:v1", ("localhost:5000", "app", ":v1")),
        ("acme/app:v1", ("", "acme/app", ":v1")),
        ("ghcr.io/a/b@sha256:0123456789abcdef", ("ghcr.io", "a/b", "@0123456789ab")),
        ("ghcr.io/a/b:v1@sha256:0123456789abcdef", ("ghcr.io", "a/b", ":v1@0123456789ab")),
    ],
)
def test_split_image(ref: str, parts: tuple[str, str, str]) -> None:
    assert render.split_image(ref) == parts


def test_image_cell_drops_registry_then_path_then_cuts() -> None:
    p = pull()
    wide = render.image_cell(p, 40, color=True)
    assert render.plain(wide) == "ghcr.io/acme/checkout-api:v2.14.1"
    assert wide[0] == ("ghcr.io/", render.COLOR.muted)
    assert wide[2] == (":v2.14.1", render.COLOR.accent)
    assert render.plain(render.image_cell(p, 26, color=True)) == "acme/checkout-api:v2.14.1"
    assert render.plain(render.image_cell(p, 20, color=True)) == "checkout-api:v2.14.1"
    narrow = render.plain(render.image_cell(p, 14, color=True))
    assert len(narrow) == 14 and narrow.startswith("checko") and "…" in narrow


def test_image_of_a_resolving_pull_names_its_first_blob() -> None:
    p = pull(image_ref="", layers=[LayerStatus(digest="sha256:" + "ab" * 32)])
    assert render.plain(render.image_cell(p, 40, True)).startswith("<resolving sha256:abab")


def test_compact_bytes_never_exceeds_five_characters() -> None:
    for n in (0, 1, 999, 1000, 1023 * 1024, 99.9 * MiB, 512 * MiB, 4.4 * 1024 * MiB, 1 << 50):
        assert len(render.compact_bytes(n)) <= 5
    assert render.compact_bytes(512 * MiB) == "512M"
    assert render.compact_bytes(4.4 * 1024 * MiB) == "4.4G"
    assert render.compact_speed(0) == "-"


def test_progress_bar_shows_cached_share_apart_and_keeps_its_width() -> None:
    cell = render.pull_progress_cell(pull(), 10, color=True)
    assert render.plain(cell) == "██████████  50%"
    assert cell[0] == ("██", render.COLOR.bar_cached)
    assert cell[1] == ("███", render.COLOR.bar_done)
    mono = render.plain(render.pull_progress_cell(pull(), 10, color=False))
    assert mono == "▓▓███░░░░░  50%"
    failed = render.pull_progress_cell(pull(phase="failed"), 4, color=True)
    assert render.COLOR.bar_failed in [style for _, style in failed]


def test_no_color_cells_carry_no_colours() -> None:
    p = pull(pods=[PodRef(namespace="shop", pod_name="web-1")])
    for cell in row_cells(p, layout(160), T0, color=False).values():
        for _, style in cell:
            assert "#" not in style


def test_size_shows_cached_only_with_room() -> None:
    assert render.size_text(pull(), with_cached=False) == "100M/200M"
    assert render.size_text(pull(), with_cached=True) == "100M/200M (50.0M cached)"
    assert render.size_text(pull(total_known=False, downloaded_bytes=0), True) == "-"


def test_eta_cell_by_phase() -> None:
    now = T0 + timedelta(seconds=75)
    assert render.plain(render.eta_or_elapsed_cell(pull(), now, True)) == "20s"
    assert render.plain(render.eta_or_elapsed_cell(pull(eta_seconds=None), now, True)) == "+1m15s"
    done = pull(phase="completed", completed_at=T0 + timedelta(seconds=38))
    assert render.plain(render.eta_or_elapsed_cell(done, now, True)) == "38s"
    failed = pull(phase="failed", error="download of layer 1 stalled for 91s at 3 of 9 bytes")
    assert render.eta_or_elapsed_cell(failed, now, True) == (("stalled", render.COLOR.bad),)
    assert render.failure_reason("was aborted at 1 of 2 bytes") == "aborted"
    assert render.failure_reason("") == "failed"


def test_pods_cell_counts_first() -> None:
    pods = [PodRef(namespace="shop", pod_name="checkout-api-7d9f-abcde") for _ in range(3)]
    assert render.plain(render.pods_spans(pull(pods=pods), 12, True)) == "3 checkout-…"
    assert render.plain(render.pods_spans(pull(), 12, True)) == "-"


def test_layer_cells() -> None:
    layer = LayerStatus(
        digest="sha256:" + "e6" * 32,
        media_type="application/vnd.oci.image.layer.v1.tar+zstd",
        total_bytes=10 * MiB,
        downloaded_bytes=4 * MiB,
        bytes_per_sec=MiB,
        percent=40.0,
        started_at=T0,
        total_known=True,
    )
    cells = [render.plain(c) for c in render.layer_cells(layer, 5, False)]
    assert cells == ["e6e6e6e6e6e6", "tar+zstd", "██░░░  40%", "4.0M/10.0M", "1.0M/s", "pulling"]
    cached = LayerStatus(digest="sha256:aa", total_bytes=MiB, cached=True, percent=100.0)
    assert [render.plain(c) for c in render.layer_cells(cached, 5, True)][3:] == [
        "1.0M/1.0M",
        "-",
        "cached",
    ]
    assert render.media_kind("application/vnd.docker.image.rootfs.diff.tar.gzip") == "tar.gzip"
    waiting = LayerStatus(digest="sha256:bb", total_bytes=MiB)
    assert render.layer_state(waiting) == "waiting"
    queued = LayerStatus(digest="sha256:cc", total_bytes=MiB, queued=True)
    assert [render.plain(c) for c in render.layer_cells(queued, 5, False)][3:] == [
        "0B/1.0M",
        "-",
        "queued",
    ]


@pytest.mark.parametrize("width", [80, 100, 120, 160, 200])
def test_layout_fills_the_width_exactly(width: int) -> None:
    lay = layout(width)
    used = sum(c.width + 2 * PADDING for c in lay.columns) + CHROME
    assert used == width
    keys = [c.key for c in lay.columns]
    assert keys[:2] == ["state", "image"] and "pods" in keys and "eta" in keys
    assert ("size" in keys) == (width >= 110)


def test_row_cells_dim_finished_rows_but_not_their_glyph_or_failure() -> None:
    failed = pull(phase="failed", error="aborted")
    cells = row_cells(failed, layout(120), T0, color=True)
    assert "dim" not in cells["state"][0][1]
    assert "dim" not in cells["eta"][0][1]
    assert all("dim" in style for _, style in cells["node"])
    active = row_cells(pull(), layout(120), T0, color=True)
    assert all("dim" not in style for cell in active.values() for _, style in cell)
