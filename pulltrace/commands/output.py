"""``ls`` output formats: JSON for scripts, aligned text tables for people."""

from __future__ import annotations

from pulltrace import render
from pulltrace.model import PullList, PullStatus, encode

_TABLE = ("IMAGE", "NODE", "PHASE", "PROGRESS", "SIZE", "SPEED", "ETA/TOOK")
_WIDE = (*_TABLE, "LAYERS", "PODS", "STARTED", "ERROR")


def render_json(pulls: list[PullStatus]) -> str:
    return encode(PullList(pulls=pulls)).decode() + "\n"


def row(pull: PullStatus, wide: bool) -> list[str]:
    cells = [
        render.image_name(pull),
        pull.node_name,
        pull.phase + (f" ({render.failure_reason(pull.error)})" if pull.error else ""),
        f"{render.bar(pull.percent, 10)} {pull.percent:5.1f}%",
        render.size_cell(pull),
        render.human_speed(pull.bytes_per_sec),
        render.eta_cell(pull),
    ]
    if wide:
        started = pull.started_at.strftime("%Y-%m-%dT%H:%M:%SZ") if pull.started_at else "-"
        layers = f"{pull.layers_done}/{pull.layer_count}"
        if pull.layers_cached:
            layers += f" ({pull.layers_cached} cached)"
        cells += [layers, render.pods_cell(pull), started, pull.error or "-"]
    return cells


def render_table(pulls: list[PullStatus], wide: bool = False) -> str:
    if not pulls:
        return "No image pulls.\n"
    rows = [list(_WIDE if wide else _TABLE)] + [row(p, wide) for p in pulls]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def format_pulls(pulls: list[PullStatus], fmt: str) -> str:
    if fmt == "json":
        return render_json(pulls)
    return render_table(pulls, wide=fmt == "wide")
