"""The default back end: SQLite in ``--data-dir``, with the standard library's driver.

WAL with ``synchronous=NORMAL``: a committed transaction survives the process being killed
(it is in the WAL file, which the next open replays); only a power cut can lose the last
commits, never corrupt the file. The writer and the readers have their own connections, so
queries never wait on a batch being written. The schema version is ``PRAGMA user_version``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pulltrace.collector.history.base import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Connection,
    HistoryError,
    Row,
    SqlHistory,
    after_migration,
)

FILE_NAME = "history.db"
BUSY_TIMEOUT_MS = 10_000


class _Conn:
    for_update = ""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(
            path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=True
        )
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE``: takes the write lock at once, so two writers queue on the busy
        timeout instead of one failing when it upgrades a read."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()


class SqliteHistory(SqlHistory):
    kind = "sqlite"
    contains = "instr"

    def __init__(self, data_dir: str | Path, *, target: int = SCHEMA_VERSION) -> None:
        """``target`` below the newest is for tests of the migrations."""
        self.path = Path(data_dir) / FILE_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            super().__init__(lambda: _Conn(self.path))
            migrate(self._db(), target)
        except (OSError, sqlite3.Error) as err:
            raise HistoryError(f"history database {self.path}: {err}") from None

    def schema_version(self) -> int:
        return int(self._db().run("PRAGMA user_version")[0][0])

    def integrity(self) -> str:
        """``PRAGMA integrity_check``'s verdict: ``ok`` or what is wrong."""
        return "; ".join(str(row[0]) for row in self._db().run("PRAGMA integrity_check"))


def migrate(db: Connection, target: int = SCHEMA_VERSION) -> None:
    """From whatever version the file is at to ``target``, in one transaction: a collector
    killed halfway leaves the previous version, not half of the next."""
    with db.transaction():
        current = int(db.run("PRAGMA user_version")[0][0])
        if current > SCHEMA_VERSION:
            raise HistoryError(
                f"history database schema version {current} is newer than this pulltrace's"
                f" ({SCHEMA_VERSION}): upgrade pulltrace, or use another --data-dir"
            )
        for version in range(current + 1, target + 1):
            for statement in MIGRATIONS[version - 1]:
                db.run(statement.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT"))
            after_migration(db, version)
        if target > current:
            db.run(f"PRAGMA user_version = {int(target)}")
