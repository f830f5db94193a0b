"""Text and cells are plain data, so every quantity, every cell and the terminal-safety rules
are checked here without a terminal."""

from __future__ import annotations

import string
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pulltrace import render
from pulltrace.model import LayerStatus, PodRef, PullStatus

T0 = datetime(2026, 1, 15, 9, 40, tzinfo=UTC)
MiB = 1024 * 1024
HOSTILE = "ghcr.io/acme/app\x1b[2J\x1b]0;owned\x07:v1\r\x00\u202egnp.exe\x9b31m"


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


def unsafe(text: str) -> list[str]:
    """Characters a terminal could act on, or that would not show as themselves."""
    return [c for c in text if not c.isprintable()]


# --- terminal safety ------------------------------------------------------------------------


@given(st.text(), st.integers(min_value=0, max_value=300))
@example(HOSTILE, 40)
@example("\U000e0001\U000e0041\ud800\u2028\u2029\u200b\ufeff\u061c\u2066\x7f\x85", 300)
@example("界" * 400, 253)
@example("e" + "\u0301" * 5000, 10)
def test_printable_leaves_nothing_a_terminal_acts_on_and_stays_in_bounds(
    text: str, limit: int
) -> None:
    shown = render.printable(text, limit)
    assert unsafe(shown) == []
    assert len(shown) <= limit and render.cell_width(shown) <= limit
    shown.encode("utf-8")  # no unpaired surrogate left to fail on the way out
    assert render.printable(shown, limit) == shown, "escaping twice changes nothing"


@given(st.text(alphabet=string.printable.replace("\t", "").replace("\n", "")[:-4]))
def test_printable_text_is_unchanged_when_it_fits(text: str) -> None:
    assert render.printable(text, len(text)) == text


def test_controls_are_escaped_visibly_not_dropped() -> None:
    assert render.printable("a\x1b[31mb\x07c\rd\x00e\x7f\x9b\u202ef") == (
        "a\\x1b[31mb\\x07c\\rd\\x00e\\x7f\\x9b\\u202ef"
    )
    assert render.printable("tab\there\nthere") == "tab\\there\\nthere"


def test_long_text_is_cut_with_an_ellipsis() -> None:
    assert render.printable("x" * 900_000, 253) == "x" * 252 + "…"
    assert render.printable("abc", 3) == "abc"
    assert render.fit("界界界", 5) == "界界…"
    assert render.fit("abc", 0) == ""


@given(st.text(), st.integers(min_value=0, max_value=80))
def test_fit_never_exceeds_its_width(text: str, width: int) -> None:
    safe = render.printable(text, 10_000)
    assert render.cell_width(render.fit(safe, width)) <= width


def test_cell_width_counts_wide_and_combining_characters() -> None:
    assert render.cell_width("abc") == 3
    assert render.cell_width("界a") == 3
    assert render.cell_width("e\u0301") == 1
    assert unicodedata.east_asian_width(render.ELLIPSIS) == "A"  # taken as one cell


@given(st.text(max_size=600), st.text(max_size=300), st.text(max_size=300), st.text(max_size=2000))
@example(HOSTILE, HOSTILE, HOSTILE, HOSTILE)
def test_every_text_of_a_pull_from_a_peer_is_safe_and_bounded(
    ref: str, node: str, pod: str, error: str
) -> None:
    p = pull(
        image_ref=ref,
        repository=ref,
        node_name=node or "n",
        error=error,
        phase="failed" if error else "pulling",
        pods=[PodRef(namespace=pod, pod_name=pod, container=pod)],
        layers=[LayerStatus(digest=ref, media_type=pod)],
    )
    bounded = {
        render.image_text(p): render.REF_MAX + len("<resolving >"),
        render.node_text(p.node_name): render.NAME_MAX,
        render.message_text(p.error): render.MESSAGE_MAX,
        render.pods_text(p, 16): 16,
        render.short_digest(ref): render.DIGEST_SHORT,
        render.media_kind(pod): render.NAME_MAX,
        render.failure_reason(error): 7,
    }
    for text, limit in bounded.items():
        assert unsafe(text) == [] and render.cell_width(text) <= limit, text
    for part in render.image_label(p):
        assert unsafe(part) == []
    for width in (14, 30, 46):
        assert render.cell_width(render.plain(render.image_cell(p, width, True))) <= width
        assert render.cell_width(render.plain(render.node_cell(p, width))) <= width
        assert render.cell_width(render.plain(render.pods_cell(p, width, True))) <= width


# --- one text per quantity ------------------------------------------------------------------


def test_bytes_never_exceed_five_characters() -> None:
    for n in (0, 1, 999, 1000, 1023 * 1024, 99.9 * MiB, 512 * MiB, 4.4 * 1024 * MiB, 1 << 50):
        assert len(render.bytes_text(n)) <= 5
    assert render.bytes_text(512 * MiB) == "512M"
    assert render.bytes_text(4.4 * 1024 * MiB) == "4.4G"
    assert render.bytes_text(1024) == "1.0K"
    assert render.bytes_text(3 << 40) == "3.0T"
    assert render.speed_text(0) == "-"
    assert render.bytes_text(-1) == "-" and render.bytes_text(2**64) == ">8E"
    assert render.speed_text(5 * MiB) == "5.0M/s"


@given(st.one_of(st.integers(min_value=0), st.floats(allow_nan=True, allow_infinity=True)))
@example(10**400)
@example(float("-inf"))
def test_any_number_a_peer_sends_prints_in_a_few_characters(n: float) -> None:
    assert len(render.bytes_text(n)) <= 5
    assert len(render.speed_text(n)) <= 7
    assert len(render.duration_text(n)) <= 6
    assert 2 <= len(render.percent_text(n)) <= 4


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (float("nan"), "-"),
        (-3.0, "0s"),
        (0.4, "0s"),
        (59, "59s"),
        (61, "1m01s"),
        (7322, "2h02m"),
        (400_000, "4d15h"),
        (365 * 86400, "365d"),
        (1e308, ">999d"),
        (float("inf"), ">999d"),
    ],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert render.duration_text(seconds) == text


def test_progress_text_shows_cached_share_apart_and_keeps_its_width() -> None:
    assert render.progress_text(50, 0.25, 10) == "▓▓███░░░░░  50%"
    assert render.progress_text(150, 0.0, 4) == "████ 100%"
    assert render.progress_text(-3, 0.0, 4) == "░░░░   0%"


def test_progress_cell_is_the_text_in_colour() -> None:
    cell = render.pull_progress_cell(pull(), 10, color=True)
    assert render.plain(cell) == "██████████  50%"
    assert cell[0] == ("██", render.COLOR.bar_cached)
    assert cell[1] == ("███", render.COLOR.bar_done)
    mono = render.plain(render.pull_progress_cell(pull(), 10, color=False))
    assert mono == render.progress_text(50.0, 0.25, 10)
    failed = render.pull_progress_cell(pull(phase="failed"), 4, color=True)
    assert render.COLOR.bar_failed in [style for _, style in failed]


def test_size_shows_cached_only_with_room() -> None:
    assert render.size_text(pull(), with_cached=False) == "100M/200M"
    assert render.size_text(pull(), with_cached=True) == "100M/200M (50.0M cached)"
    assert render.size_text(pull(total_known=False, downloaded_bytes=0), True) == "-"
    cell = render.size_cell(pull(), True, color=True)
    assert cell == (("100M/200M", ""), (" (50.0M cached)", render.COLOR.cached))


def test_timing_by_phase() -> None:
    now = T0 + timedelta(seconds=75)
    assert render.timing_text(pull(), now) == "20s"
    assert render.timing_text(pull(eta_seconds=None), now) == "+1m15s"
    assert render.timing_text(pull(eta_seconds=None, started_at=None), now) == "-"
    done = pull(phase="completed", completed_at=T0 + timedelta(seconds=38))
    assert render.timing_text(done, now) == "38s"
    assert render.timing_cell(done, now, True) == (("38s", render.COLOR.muted),)
    failed = pull(phase="failed", error="download of layer 1 stalled for 91s at 3 of 9 bytes")
    assert render.timing_text(failed, now) == "-"
    assert render.failure_cell(failed, True) == (("stalled", render.COLOR.bad),)
    assert render.failure_reason("was aborted at 1 of 2 bytes") == "aborted"
    assert render.failure_reason("") == "failed"


def test_pods_count_first() -> None:
    pods = [PodRef(namespace="shop", pod_name="checkout-api-7d9f-abcde") for _ in range(3)]
    assert render.pods_text(pull(pods=pods), 12) == "3 checkout-…"
    assert render.pods_cell(pull(pods=pods), 12, True) == (
        ("3 ", render.COLOR.accent),
        ("checkout-…", ""),
    )
    assert render.plain(render.pods_cell(pull(), 12, True)) == "-"


def test_layers_and_image_text() -> None:
    p = pull(layer_count=5, layers_done=3, layers_cached=1)
    assert render.layers_text(p) == "3/5 (1 cached)"
    assert render.image_text(pull(image_ref="")) == "<unknown>"
    resolving = pull(image_ref="", layers=[LayerStatus(digest="sha256:" + "ab" * 32)])
    assert render.image_text(resolving) == "<resolving sha256:abababababab>"


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
    hostile = LayerStatus(digest="sha256:\x1b[2J" + "a" * 60, media_type="x/\x07\x07")
    digest, media = (render.plain(c) for c in render.layer_cells(hostile, 5, False)[:2])
    assert digest == "\\x1b[2Jaaaa…" and media == "\\x07\\x07"
