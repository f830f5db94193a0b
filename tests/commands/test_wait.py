"""``wait``'s lines from hostile pods and pulls: every line is safe for a terminal and a CI log,
and bounded, however long or strange the image references, node names and messages are."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from pulltrace import render
from pulltrace.commands.wait import Need, Printer, error_annotation, report, summary_markdown
from pulltrace.model import PullStatus

T0 = datetime(2026, 1, 15, 9, 40, tzinfo=UTC)
ESCAPES = "\x1b]0;owned\x07\x1b[2J\r\n::error::injected\x00\x9b31m\u202e"
HOSTILE_REF = f"ghcr.io/acme/app{ESCAPES}:v1"
HUGE_REF = "ghcr.io/acme/" + "a" * 900_000 + ":v1"


def raw_controls(text: str) -> list[str]:
    return [c for c in text if not (c.isprintable() or c == "\n")]


def need(image: str, state: str = "pending", **pull: object) -> Need:
    status = PullStatus(
        id="p",
        node_name="n",
        image_ref=image,
        phase=pull.pop("phase", "pulling"),  # type: ignore[arg-type]
        total_bytes=200 * 1024 * 1024,
        downloaded_bytes=50 * 1024 * 1024,
        cached_bytes=50 * 1024 * 1024,
        percent=50.0,
        bytes_per_sec=5 * 1024 * 1024,
        eta_seconds=20.0,
        started_at=T0,
        total_known=True,
        **pull,  # type: ignore[arg-type]
    )
    return Need(
        "ns",
        f"pod{ESCAPES}",
        "c",
        image,
        f"node{ESCAPES}",
        state,  # type: ignore[arg-type]
        reason=f"Back-off pulling image{ESCAPES}" + "r" * 5000,
        pull=status,
    )


def printed(*needs: Need) -> list[str]:
    out = io.StringIO()
    report(list(needs), Printer(out=out, interval=0.0), {needs[0].node: f"degraded: gone{ESCAPES}"})
    text = out.getvalue()
    assert raw_controls(text) == []
    return text.splitlines()


def test_progress_pulled_and_failed_lines_are_safe_and_bounded() -> None:
    done = need(HOSTILE_REF, "pulled", phase="completed", completed_at=T0 + timedelta(seconds=12))
    lines = printed(need(HOSTILE_REF), need(HUGE_REF), done, need(HOSTILE_REF, "failed"))
    assert len(lines) == 4, "no field starts a line of its own"
    pulling, huge, pulled, failed = (line.split(" ", 1)[1] for line in lines)
    assert pulling.startswith("pulling ghcr.io/acme/app\\x1b]0;owned\\x07")
    assert ": 50% 100M/200M 5.0M/s ETA 20s; node degraded: gone\\x1b]0;owned\\x07" in pulling
    assert "a" * 200 + "…" in huge and len(huge) < 2 * render.REF_MAX + render.MESSAGE_MAX
    assert pulled.startswith("pulled ghcr.io/acme/app\\x1b") and pulled.endswith(" in 12s (200M)")
    assert failed.startswith("FAILED ") and "\\r\\n::error::injected" in failed
    assert len(failed) < render.REF_MAX + render.NAME_MAX + render.MESSAGE_MAX + 20


def test_printer_escapes_whatever_it_is_given() -> None:
    out = io.StringIO()
    printer = Printer(out=out)
    printer.line(f"source offline: {ESCAPES}")
    printer.raw(f"::group::{ESCAPES}")
    assert raw_controls(out.getvalue()) == [] and len(out.getvalue().splitlines()) == 2


def test_github_error_annotation_is_one_line_with_percent_escaped() -> None:
    line = error_annotation(need(HOSTILE_REF + "%0A::warning::x", "failed"))
    assert raw_controls(line) == [] and "\n" not in line
    assert line.startswith("::error title=Image pull failed::ghcr.io/acme/app\\x1b")
    assert "%250A::warning::x" in line


def test_step_summary_cells_cannot_break_the_table() -> None:
    text = summary_markdown([need(f"{HOSTILE_REF}|`x`", "failed"), need(HUGE_REF)], "a pull failed")
    assert raw_controls(text) == []
    rows = text.splitlines()[2:]
    assert len(rows) == 4 and all(row.count(" | ") == 3 for row in rows[2:])
    assert "\\|'x'" in text
