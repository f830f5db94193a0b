"""Regenerates ``screenshots/``: the real ``watch`` app on the demo, seed 7, clock frozen after a
90-second warm-up, so every run draws the same pixels.

Run from the repository root::

    python scripts/screenshots.py

SVGs come from Textual itself. PNGs need ``rsvg-convert`` (Debian: ``librsvg2-bin``); without
it the script says so and writes only the SVGs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pulltrace.client.demo import DemoSource  # noqa: E402
from pulltrace.tui.app import PulltraceApp  # noqa: E402

OUT = ROOT / "screenshots"
SEED = 7
START = 1_768_470_000.0
WARMUP = 90.0


@dataclass(frozen=True)
class Shot:
    name: str
    size: tuple[int, int]
    keys: Sequence[str] = ()


SHOTS = (
    Shot("main", (140, 40)),
    Shot("main-80x24", (80, 24)),
    Shot("detail", (120, 34), ("down", "enter")),
    Shot("help", (100, 28), ("question_mark",)),
)


async def take(shot: Shot) -> str:
    source = DemoSource(seed=SEED, start=START, warmup=WARMUP, follow=False)
    app = PulltraceApp(source, clock=lambda: START + WARMUP, flush_interval=3600.0)
    async with app.run_test(size=shot.size) as pilot:
        while not source.warm:
            await pilot.pause()
        app.flush()
        await pilot.pause()
        await pilot.press(*shot.keys)
        await pilot.pause()
        return app.export_screenshot(title="pulltrace watch --demo")


def to_png(svg: Path, png: Path) -> bool:
    """rsvg drops Textual's non-breaking spaces and so shifts text left; plain spaces with
    ``xml:space="preserve"`` draw the same picture."""
    converter = shutil.which("rsvg-convert")
    if converter is None:
        return False
    text = svg.read_text().replace("&#160;", " ").replace("<svg ", '<svg xml:space="preserve" ', 1)
    with tempfile.NamedTemporaryFile("w", suffix=".svg", delete=False) as tmp:
        tmp.write(text)
    try:
        subprocess.run([converter, "-z", "1.25", tmp.name, "-o", str(png)], check=True)
    finally:
        os.unlink(tmp.name)
    return True


def main() -> int:
    os.environ["TZ"] = "UTC"
    time.tzset()
    OUT.mkdir(exist_ok=True)
    pngs = True
    for shot in SHOTS:
        svg = OUT / f"{shot.name}.svg"
        svg.write_text(asyncio.run(take(shot)))
        pngs = to_png(svg, svg.with_suffix(".png")) and pngs
        print(f"wrote {svg.relative_to(ROOT)}")
    if not pngs:
        print("rsvg-convert not found (apt-get install librsvg2-bin): PNGs not written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
