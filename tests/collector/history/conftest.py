"""The history suite runs against both back ends: SQLite in a temporary directory, and a real
PostgreSQL server (Debian's package, a private cluster per session, a database per test).

Without PostgreSQL installed the PostgreSQL half is skipped off CI and fails on CI, as the
end-to-end tests do: a suite that silently skips half its back ends proves nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pulltrace.collector.history.base import SqlHistory
from pulltrace.collector.history.postgres import PostgresHistory
from pulltrace.collector.history.sqlite import SqliteHistory
from testkit.postgres import PostgresServer, unavailable

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    reason = unavailable()
    if reason is not None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI must run the PostgreSQL history tests, but: {reason}", pytrace=False)
        pytest.skip(reason)
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=BACKENDS)
def where(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Collector configuration fields that put the history in one back end, fresh and empty:
    ``data_dir`` for SQLite, ``database`` for PostgreSQL."""
    if request.param == "sqlite":
        return {"data_dir": str(tmp_path / "data")}
    server: PostgresServer = request.getfixturevalue("postgres")
    return {"database": server.fresh_database()}


@pytest.fixture
def open_history(where: dict[str, Any]) -> Iterator[Callable[..., SqlHistory]]:
    """Opens the back end ``where`` names (again, after a restart); all closed at the end."""
    opened: list[SqlHistory] = []

    def _open(**kw: Any) -> SqlHistory:
        history: SqlHistory
        if "data_dir" in where:
            history = SqliteHistory(where["data_dir"], **kw)
        else:
            history = PostgresHistory(where["database"], **kw)
        opened.append(history)
        return history

    yield _open
    for history in opened:
        history.close()
