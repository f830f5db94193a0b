"""``ls`` output from hostile pulls: the table and ``-o wide`` print only safe, bounded text;
``-o json`` keeps every string exact, with nothing raw in it that a terminal would act on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import example, given
from hypothesis import strategies as st

from pulltrace import render
from pulltrace.commands.output import format_pulls, render_table, terminal_safe_json
from pulltrace.model import LayerStatus, PodRef, PullStatus

T0 = datetime(2026, 1, 15, 9, 40, tzinfo=UTC)
ESCAPES = "\x1b]0;owned\x07\x1b[2J\r\x00\x9b31m\u202e\u2066"
HOSTILE_REF = f"ghcr.io/acme/app{ESCAPES}:v1"
HUGE_REF = "ghcr.io/acme/" + "a" * 900_000 + ":v1"


def hostile(ref: str, **kw: object) -> PullStatus:
    fields: dict[str, object] = {
        "id": f"id{ESCAPES}",
        "node_name": f"node{ESCAPES}",
        "image_ref": ref,
        "repository": ref,
        "phase": "failed",
        "total_bytes": 1000,
        "downloaded_bytes": 400,
        "percent": 40.0,
        "started_at": T0,
        "completed_at": T0 + timedelta(seconds=5),
        "error": f"download of layer aborted{ESCAPES}" + "e" * 5000,
        "pods": [PodRef(namespace=f"ns{ESCAPES}", pod_name=f"pod{ESCAPES}")],
        "layers": [LayerStatus(digest=f"sha256:{ESCAPES}", media_type=ESCAPES)],
        "total_known": True,
    }
    fields.update(kw)
    return PullStatus(**fields)  # type: ignore[arg-type]


def raw_controls(text: str) -> list[str]:
    """Characters that would reach the terminal as something other than themselves."""
    return [c for c in text if not (c.isprintable() or c == "\n")]


def test_table_and_wide_escape_and_bound_every_field() -> None:
    pulls = [hostile(HOSTILE_REF), hostile(HUGE_REF, phase="pulling", error="")]
    for fmt in ("table", "wide"):
        text = format_pulls(pulls, fmt)
        assert raw_controls(text) == [], fmt
        header, first, second = text.splitlines()
        assert "\\x1b]0;owned\\x07" in first and "\\u202e" in first, "escaped, not dropped"
        # The 900 KB reference is cut; no line comes near its size.
        assert "a" * 200 + "…" in second
        assert max(len(line) for line in (header, first, second)) < 2 * render.MESSAGE_MAX
    wide = render_table(pulls, wide=True, now=T0).splitlines()
    assert "…" in wide[1], "a 5000-character error is cut too"


def test_table_columns_line_up_whatever_the_strings() -> None:
    """Wide characters take two cells: padding counts cells, so NODE starts at one column."""
    pulls = [hostile(HOSTILE_REF), hostile("界" * 40), hostile("short")]
    header, *rows = render_table(pulls, now=T0).splitlines()
    starts = {render.cell_width(header[: header.index("NODE")])}
    starts |= {render.cell_width(row[: row.index("node\\x1b")]) for row in rows}
    assert len(starts) == 1


def test_json_keeps_the_exact_strings() -> None:
    pulls = [hostile(HOSTILE_REF), hostile(HUGE_REF)]
    text = format_pulls(pulls, "json")
    assert raw_controls(text) == []
    # Untyped: the wire's own bounds would refuse these strings, and the point is that the
    # output changed none of them.
    decoded = msgspec.json.decode(text)["pulls"]
    assert decoded == msgspec.to_builtins(pulls)
    assert decoded[0]["imageRef"] == HOSTILE_REF and decoded[1]["imageRef"] == HUGE_REF


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"])))  # msgspec decodes none
@example("\x7f")
@example("\U000e0001 \u2028 \x85")
def test_terminal_safe_json_is_the_same_json(value: str) -> None:
    encoded = msgspec.json.encode({"s": value}).decode()
    safe = terminal_safe_json(encoded)
    assert raw_controls(safe) == []
    assert msgspec.json.decode(safe) == {"s": value}


def test_an_active_pull_without_an_eta_shows_its_time_so_far() -> None:
    pull = hostile("app:v1", phase="pulling", error="", completed_at=None, eta_seconds=None)
    row = render_table([pull], now=T0 + timedelta(seconds=75)).splitlines()[1]
    assert "+1m15s" in row and "400B/1.0K" in row
