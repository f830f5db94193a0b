"""``ls --watch`` on the demo: the real collector merge, printed kubectl-style."""

from __future__ import annotations

import asyncio
import io

import msgspec

from pulltrace.client.connect import Plan
from pulltrace.client.store import Query
from pulltrace.commands.ls import watch_rows
from pulltrace.model import PullStatus


async def printed(fmt: str, lines: int, query: Query | None = None) -> list[str]:
    out, err = io.StringIO(), io.StringIO()
    task = asyncio.create_task(watch_rows(Plan("demo", seed=3), query or Query(), fmt, out, err))
    try:
        while out.getvalue().count("\n") < lines:
            if task.done():
                task.result()  # re-raises what ended it
                raise AssertionError("ls --watch ended by itself")
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert err.getvalue() == ""
    return out.getvalue().splitlines()


async def test_table_prints_the_header_once_then_changed_rows() -> None:
    header, *rows = await printed("table", 40)
    assert header.split()[:3] == ["IMAGE", "NODE", "PHASE"]
    assert "IMAGE" not in "".join(rows)
    assert any(" pulling " in row for row in rows)


async def test_json_is_one_pull_per_line() -> None:
    lines = await printed("json", 30, Query(phases=frozenset({"completed"})))
    pulls = [msgspec.json.decode(line, type=PullStatus) for line in lines]
    assert pulls and all(p.phase == "completed" for p in pulls)
