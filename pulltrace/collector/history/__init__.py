"""The collector's long memory: every finished pull, and DIUN's image update notices.

``PullStore`` forgets a finished pull after ``--history-ttl``; this package keeps it, in SQLite
under ``--data-dir`` (the default) or in PostgreSQL with ``--database postgresql://…`` (for a
collector without a volume, or a team that wants the history in its own database). Both back
ends implement ``HistoryBackend`` and pass one test suite.

Nothing here runs on the event loop: ``Recorder`` turns the store's events into rows on a
writer thread, in batches, and the API runs queries in worker threads.
"""

from __future__ import annotations

from pulltrace.collector.history.base import (
    Cursor,
    HistoryBackend,
    HistoryQuery,
    TagResult,
)
from pulltrace.collector.history.recorder import Recorder, finished_pull

__all__ = [
    "Cursor",
    "HistoryBackend",
    "HistoryQuery",
    "Recorder",
    "TagResult",
    "finished_pull",
    "open_backend",
]


def open_backend(data_dir: str, database: str) -> HistoryBackend:
    """PostgreSQL when a database URL is given, else SQLite in ``data_dir``; both migrated.
    Raises ``HistoryError`` when the database cannot be opened or migrated."""
    if database:
        from pulltrace.collector.history.postgres import PostgresHistory

        return PostgresHistory(database)
    from pulltrace.collector.history.sqlite import SqliteHistory

    return SqliteHistory(data_dir)
