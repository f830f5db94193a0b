"""Which columns the pull table shows at a width, and each row's cells, without a terminal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.style import Style

from pulltrace import render
from pulltrace.model import PodRef
from pulltrace.tui.columns import CHROME, PADDING, layout, row_cells
from pulltrace.tui.widgets.pull_table import row_strip, table_width
from tests.test_render import T0, pull


def test_no_color_cells_carry_no_colours() -> None:
    p = pull(pods=[PodRef(namespace="shop", pod_name="web-1")])
    for cell in row_cells(p, layout(160), T0, color=False).values():
        for _, style in cell:
            assert "#" not in style


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


@given(
    st.text(max_size=400),
    st.text(max_size=300),
    st.text(max_size=300),
    st.text(max_size=300),
    st.integers(min_value=80, max_value=220),
)
def test_every_cell_fits_its_column_whatever_a_peer_sends(
    ref: str, node: str, pod: str, error: str, width: int
) -> None:
    p = pull(
        image_ref=ref,
        node_name=node or "n",
        pods=[PodRef(namespace=pod, pod_name=pod)],
        phase="failed" if error else "pulling",
        error=error,
        eta_seconds=None,
    )
    lay = layout(width)
    cells = row_cells(p, lay, T0, color=True)
    for column in lay.columns:
        text = render.plain(cells[column.key])
        assert [c for c in text if not c.isprintable()] == [], column.key
        assert render.cell_width(text) <= column.width, column.key
    strip = row_strip(lay, cells, Style())
    assert strip.cell_length == table_width(lay)
