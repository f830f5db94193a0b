"""What both back ends share: the interface, the SQL (one dialect with two spellings), the
migrations, and the rows' shape.

Times are stored as epoch seconds (a double in both databases), so that retention, keyset
pages and windows are plain comparisons and no timezone conversion happens in SQL. A pull's
row keeps its ``FinishedPull`` JSON for the API next to the columns queries filter and group
on; the layers themselves are dropped (their counts stay), since a finished pull's layer list
is most of its size and the history's readers ask about pulls.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import msgspec

from pulltrace.collector.history.rollup import (
    ALL,
    DAY,
    Fact,
    Key,
    Roll,
    group_facts,
    roll_up,
)
from pulltrace.errors import SourceError
from pulltrace.model import (
    DiunNotification,
    FinishedPull,
    ImageUpdate,
    StatsBy,
    StatsGroup,
    Tag,
)

SCHEMA_VERSION = 2
"""The newest schema; ``MIGRATIONS[n - 1]`` brings a database from version n - 1 to n."""
STATS_GROUPS_MAX = 1000
"""Groups in one stats answer, the largest first: the rest is a long tail nobody reads."""

TagResult = Literal["ok", "no-image", "no-tag"]


class HistoryError(SourceError):
    """The history database cannot be opened, migrated or written."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: after this (finished time, id), newest first."""

    finished_at: float
    id: str

    def encode(self) -> str:
        raw = msgspec.json.encode([self.finished_at, self.id])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Raises ValueError for a token this collector did not make."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            at, pull_id = msgspec.json.decode(raw, type=tuple[float, str])
        except (binascii.Error, msgspec.ValidationError, msgspec.DecodeError) as err:
            raise ValueError("not a continue token from this collector") from err
        if not math.isfinite(at) or len(pull_id) > 256:
            raise ValueError("not a continue token from this collector")
        return cls(at, pull_id)


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    image: str | None = None
    """A substring of the image reference or the repository, as ``/api/v1/pulls`` matches."""
    node: str | None = None
    phase: Literal["completed", "failed"] | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100
    after: Cursor | None = None


class HistoryBackend(Protocol):
    """A history database. Every method blocks, and is safe to call from any thread (each
    thread gets its own connection): the recorder writes from its thread, the API reads from
    worker threads."""

    kind: str
    """``sqlite`` or ``postgresql``, for logs and the benchmark."""

    def schema_version(self) -> int: ...

    def write(self, pulls: Sequence[FinishedPull]) -> None:
        """Insert or replace, keyed by pull id, in one transaction."""
        ...

    def query(self, q: HistoryQuery) -> tuple[list[FinishedPull], Cursor | None]: ...

    def recent(self, since: float, limit: int) -> list[FinishedPull]:
        """Pulls finished since then, oldest first (to reload the live store)."""
        ...

    def stats(self, by: StatsBy, since: float | None) -> list[StatsGroup]: ...

    def prune(self, before: float, max_rows: int) -> int:
        """Drop pulls finished before then, and the oldest beyond ``max_rows``."""
        ...

    def count(self) -> int: ...

    def upsert_update(self, notice: DiunNotification, received_at: float) -> None:
        """Keyed by image; a repeat replaces the notice and clears ``acknowledged``."""
        ...

    def updates(self) -> list[ImageUpdate]: ...

    def acknowledge(self, image: str, acknowledged: bool) -> bool:
        """False when the image has no update."""
        ...

    def set_tag(self, image: str, tag_id: int | None) -> TagResult: ...

    def tags(self) -> list[Tag]: ...

    def create_tag(self, name: str) -> Tag | None:
        """None when the name is taken."""
        ...

    def delete_tag(self, tag_id: int) -> bool:
        """Its updates become untagged; False when there is no such tag."""
        ...

    def close(self) -> None:
        """Closes the calling thread's connection, and stops new ones being made."""
        ...


# -- the shared SQL ---------------------------------------------------------------------------

Row = tuple[Any, ...]

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: finished pulls.
    (
        """CREATE TABLE pulltrace_pulls (
            id TEXT PRIMARY KEY,
            node TEXT NOT NULL,
            image TEXT NOT NULL,
            repository TEXT NOT NULL,
            phase TEXT NOT NULL,
            finished_at DOUBLE PRECISION NOT NULL,
            duration DOUBLE PRECISION NOT NULL,
            downloaded BIGINT NOT NULL,
            avg_speed DOUBLE PRECISION NOT NULL,
            status TEXT NOT NULL
        )""",
        "CREATE INDEX pulltrace_pulls_finished ON pulltrace_pulls (finished_at, id)",
    ),
    # 2: peak speed as a column; per-group indexes; the stats rollups (filled from the pulls
    # already there by ``after_migration``); DIUN's updates and their tags.
    (
        "ALTER TABLE pulltrace_pulls ADD COLUMN peak_speed DOUBLE PRECISION NOT NULL DEFAULT 0",
        "CREATE INDEX pulltrace_pulls_node ON pulltrace_pulls (node, finished_at)",
        "CREATE INDEX pulltrace_pulls_image ON pulltrace_pulls (image, finished_at)",
        "CREATE INDEX pulltrace_pulls_repository ON pulltrace_pulls (repository, finished_at)",
        # Covers what stats read of the pulls of a window's first, partial day.
        "CREATE INDEX pulltrace_pulls_facts ON pulltrace_pulls (finished_at, image, node,"
        " repository, phase, downloaded, duration, avg_speed)",
        """CREATE TABLE pulltrace_rollups (
            dim TEXT NOT NULL,
            key TEXT NOT NULL,
            day INTEGER NOT NULL,
            count BIGINT NOT NULL,
            failures BIGINT NOT NULL,
            bytes BIGINT NOT NULL,
            duration_max DOUBLE PRECISION NOT NULL,
            speed_max DOUBLE PRECISION NOT NULL,
            durations TEXT NOT NULL,
            speeds TEXT NOT NULL,
            PRIMARY KEY (dim, key, day)
        )""",
        """CREATE TABLE pulltrace_tags (
            id {serial},
            name TEXT NOT NULL UNIQUE
        )""",
        """CREATE TABLE pulltrace_updates (
            image TEXT PRIMARY KEY,
            digest TEXT NOT NULL,
            status TEXT NOT NULL,
            provider TEXT NOT NULL,
            hub_link TEXT NOT NULL,
            platform TEXT NOT NULL,
            created DOUBLE PRECISION,
            received_at DOUBLE PRECISION NOT NULL,
            acknowledged BOOLEAN NOT NULL DEFAULT FALSE,
            tag_id BIGINT
        )""",
    ),
)
assert len(MIGRATIONS) == SCHEMA_VERSION

_GROUP_COLUMNS: dict[str, str] = {"image": "image", "node": "node", "repository": "repository"}
_finished_decoder = msgspec.json.Decoder(FinishedPull)
_encoder = msgspec.json.Encoder()


class Connection(Protocol):
    """The little both drivers' connections are asked for, in ``?`` style (PostgreSQL's back
    end rewrites to ``%s``)."""

    for_update: str
    """What makes a SELECT lock the rows it reads, inside a transaction."""

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def transaction(self) -> AbstractContextManager[None]: ...

    def close(self) -> None: ...


class SqlHistory:
    """``HistoryBackend`` over a ``Connection`` per thread; the subclasses open connections
    and run the migrations, in their databases' ways."""

    kind = "sql"
    contains = "instr"
    """The substring function: ``instr(hay, needle)`` in SQLite, ``strpos`` in PostgreSQL."""

    def __init__(self, connect: Callable[[], Connection]) -> None:
        import threading

        self._connect = connect
        self._local = threading.local()
        self._closed = False

    def _db(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise HistoryError("the history database is closed")
            conn = self._local.conn = self._connect()
        return conn

    def close(self) -> None:
        self._closed = True
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            conn.close()

    def schema_version(self) -> int:
        raise NotImplementedError

    # -- pulls ---------------------------------------------------------------------------------

    def write(self, pulls: Sequence[FinishedPull]) -> None:
        if not pulls:
            return
        rows = [_row(p) for p in {p.id: p for p in pulls}.values()]
        db = self._db()
        with db.transaction():
            known: set[str] = set()
            for start in range(0, len(rows), 500):
                ids = [row[0] for row in rows[start : start + 500]]
                marks = ", ".join("?" * len(ids))
                found = db.run(f"SELECT id FROM pulltrace_pulls WHERE id IN ({marks})", ids)
                known.update(pull_id for (pull_id,) in found)
            db.run_many(
                "INSERT INTO pulltrace_pulls (id, node, image, repository, phase, finished_at,"
                " duration, downloaded, avg_speed, peak_speed, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET node = excluded.node, image = excluded.image,"
                " repository = excluded.repository, phase = excluded.phase,"
                " finished_at = excluded.finished_at, duration = excluded.duration,"
                " downloaded = excluded.downloaded, avg_speed = excluded.avg_speed,"
                " peak_speed = excluded.peak_speed, status = excluded.status",
                rows,
            )
            # A pull counts in the rollups once: an upsert changes none of their figures.
            fresh = [_fact(row) for row in rows if row[0] not in known]
            apply_rolls(db, roll_up(fresh), 1)

    def query(self, q: HistoryQuery) -> tuple[list[FinishedPull], Cursor | None]:
        where, params = self._where(q)
        if q.after is not None:
            where.append("(finished_at < ? OR (finished_at = ? AND id < ?))")
            params += [q.after.finished_at, q.after.finished_at, q.after.id]
        sql = "SELECT finished_at, id, status FROM pulltrace_pulls"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY finished_at DESC, id DESC LIMIT ?"
        rows = self._db().run(sql, [*params, q.limit + 1])
        pulls = [_finished_decoder.decode(status) for _, _, status in rows[: q.limit]]
        more = len(rows) > q.limit
        last = rows[q.limit - 1] if more else None
        return pulls, (Cursor(float(last[0]), str(last[1])) if last else None)

    def _where(self, q: HistoryQuery) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if q.image:
            where.append(f"({self.contains}(image, ?) > 0 OR {self.contains}(repository, ?) > 0)")
            params += [q.image, q.image]
        if q.node:
            where.append("node = ?")
            params.append(q.node)
        if q.phase:
            where.append("phase = ?")
            params.append(q.phase)
        if q.since is not None:
            where.append("finished_at >= ?")
            params.append(q.since)
        if q.until is not None:
            where.append("finished_at < ?")
            params.append(q.until)
        return where, params

    def recent(self, since: float, limit: int) -> list[FinishedPull]:
        rows = self._db().run(
            "SELECT status FROM (SELECT finished_at, id, status FROM pulltrace_pulls"
            " WHERE finished_at >= ? ORDER BY finished_at DESC, id DESC LIMIT ?) AS newest"
            " ORDER BY finished_at, id",
            [since, limit],
        )
        return [_finished_decoder.decode(status) for (status,) in rows]

    def stats(self, by: StatsBy, since: float | None) -> list[StatsGroup]:
        """From the rollups: the all-time rows, or the window's whole days plus the pulls of
        its first, partial day."""
        column = _GROUP_COLUMNS[by]
        db = self._db()
        groups: dict[str, Roll] = {}
        if since is None:
            rows = db.run(f"SELECT key, {_ROLL_COLUMNS} FROM pulltrace_rollups"
                          " WHERE dim = ? AND day = ?", [by, ALL])  # fmt: skip
        else:
            first_day = math.ceil(since / DAY)
            rows = db.run(f"SELECT key, {_ROLL_COLUMNS} FROM pulltrace_rollups"
                          " WHERE dim = ? AND day >= ?", [by, first_day])  # fmt: skip
            partial = db.run(
                f"SELECT {column}, phase, downloaded, duration, avg_speed FROM pulltrace_pulls"
                " WHERE finished_at >= ? AND finished_at < ?",
                [since, float(first_day * DAY)],
            )
            groups = group_facts(partial)
        for key, *rest in rows:
            roll = Roll.from_row(rest)
            held = groups.get(key)
            if held is None:
                groups[key] = roll
            else:
                held.merge(roll)
        largest = sorted(groups.items(), key=lambda item: (-item[1].count, item[0]))
        return [roll.group(key) for key, roll in largest[:STATS_GROUPS_MAX]]

    def prune(self, before: float, max_rows: int) -> int:
        db = self._db()
        with db.transaction():
            gone = db.run(
                f"DELETE FROM pulltrace_pulls WHERE finished_at < ? RETURNING {_FACT_COLUMNS}",
                [before],
            )
            (count,) = db.run("SELECT count(*) FROM pulltrace_pulls")[0]
            excess = int(count) - max_rows
            if excess > 0:
                gone += db.run(
                    "DELETE FROM pulltrace_pulls WHERE id IN (SELECT id FROM pulltrace_pulls"
                    f" ORDER BY finished_at, id LIMIT ?) RETURNING {_FACT_COLUMNS}",
                    [excess],
                )
            if gone:
                rolls = roll_up(gone)
                apply_rolls(db, rolls, -1)
                _recompute_maxima(db, list(rolls))
        return len(gone)

    def count(self) -> int:
        return int(self._db().run("SELECT count(*) FROM pulltrace_pulls")[0][0])

    # -- updates and tags ----------------------------------------------------------------------

    def upsert_update(self, notice: DiunNotification, received_at: float) -> None:
        created = notice.created.timestamp() if notice.created else None
        db = self._db()
        with db.transaction():
            db.run(
                "INSERT INTO pulltrace_updates (image, digest, status, provider, hub_link,"
                " platform, created, received_at, acknowledged) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (image) DO UPDATE SET digest = excluded.digest,"
                " status = excluded.status, provider = excluded.provider,"
                " hub_link = excluded.hub_link, platform = excluded.platform,"
                " created = excluded.created, received_at = excluded.received_at,"
                " acknowledged = excluded.acknowledged",
                [
                    notice.image,
                    notice.digest,
                    notice.status,
                    notice.provider,
                    notice.hub_link,
                    notice.platform,
                    created,
                    received_at,
                    False,
                ],
            )

    def updates(self) -> list[ImageUpdate]:
        rows = self._db().run(
            "SELECT u.image, u.digest, u.status, u.provider, u.hub_link, u.platform, u.created,"
            " u.received_at, u.acknowledged, t.id, t.name FROM pulltrace_updates AS u"
            " LEFT JOIN pulltrace_tags AS t ON t.id = u.tag_id ORDER BY u.received_at DESC,"
            " u.image"
        )
        return [
            ImageUpdate(
                image=image,
                digest=digest,
                status=status,
                provider=provider,
                hub_link=hub_link,
                platform=platform,
                created=_dt(created),
                received_at=_dt(received) or datetime.fromtimestamp(0, UTC),
                acknowledged=bool(ack),
                tag=Tag(id=int(tag_id), name=name) if tag_id is not None else None,
            )
            for (image, digest, status, provider, hub_link, platform, created, received, ack,
                 tag_id, name) in rows
        ]  # fmt: skip

    def acknowledge(self, image: str, acknowledged: bool) -> bool:
        db = self._db()
        with db.transaction():
            rows = db.run(
                "UPDATE pulltrace_updates SET acknowledged = ? WHERE image = ? RETURNING image",
                [acknowledged, image],
            )
        return bool(rows)

    def set_tag(self, image: str, tag_id: int | None) -> TagResult:
        db = self._db()
        with db.transaction():
            if tag_id is not None and not db.run(
                "SELECT id FROM pulltrace_tags WHERE id = ?", [tag_id]
            ):
                return "no-tag"
            rows = db.run(
                "UPDATE pulltrace_updates SET tag_id = ? WHERE image = ? RETURNING image",
                [tag_id, image],
            )
        return "ok" if rows else "no-image"

    def tags(self) -> list[Tag]:
        rows = self._db().run("SELECT id, name FROM pulltrace_tags ORDER BY name, id")
        return [Tag(id=int(tag_id), name=name) for tag_id, name in rows]

    def create_tag(self, name: str) -> Tag | None:
        db = self._db()
        with db.transaction():
            rows = db.run(
                "INSERT INTO pulltrace_tags (name) VALUES (?) ON CONFLICT (name) DO NOTHING"
                " RETURNING id",
                [name],
            )
        return Tag(id=int(rows[0][0]), name=name) if rows else None

    def delete_tag(self, tag_id: int) -> bool:
        db = self._db()
        with db.transaction():
            db.run("UPDATE pulltrace_updates SET tag_id = NULL WHERE tag_id = ?", [tag_id])
            rows = db.run("DELETE FROM pulltrace_tags WHERE id = ? RETURNING id", [tag_id])
        return bool(rows)


_FACT_COLUMNS = "image, node, repository, phase, finished_at, downloaded, duration, avg_speed"
_ROLL_COLUMNS = "count, failures, bytes, duration_max, speed_max, durations, speeds"


def _fact(row: Row) -> Fact:
    """A pull's row (as ``_row`` makes it) as the rollups count it."""
    return (row[2], row[1], row[3], row[4], row[5], row[7], row[6], row[8])


def apply_rolls(db: Connection, rolls: dict[Key, Roll], sign: int) -> None:
    """Adds (or takes away) rolls to the stored rows, dropping rows that reach zero pulls.
    The rows are read a few statements at a time (one per dimension, day and 500 keys) and
    written with one ``executemany``. They are read for update: two collectors may share one
    PostgreSQL database (SQLite's ``BEGIN IMMEDIATE`` already lets one writer at a time in)."""
    wanted: dict[tuple[str, int], list[str]] = {}
    for dim, key, day in rolls:
        wanted.setdefault((dim, day), []).append(key)
    stored: dict[Key, Roll] = {}
    for (dim, day), keys in wanted.items():
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            found = db.run(
                f"SELECT key, {_ROLL_COLUMNS} FROM pulltrace_rollups"
                f" WHERE dim = ? AND day = ? AND key IN ({marks})" + db.for_update,
                [dim, day, *chunk],
            )
            for key, *rest in found:
                stored[(dim, key, day)] = Roll.from_row(rest)
    upserts: list[tuple[Any, ...]] = []
    deletes: list[tuple[Any, ...]] = []
    for where, delta in rolls.items():
        roll = stored.get(where) or Roll()
        roll.merge(delta, sign)
        if roll.count > 0:
            upserts.append((*where, *roll.row()))
        elif where in stored:
            deletes.append(where)
    if deletes:
        db.run_many("DELETE FROM pulltrace_rollups WHERE dim = ? AND key = ? AND day = ?", deletes)
    if upserts:
        db.run_many(
            f"INSERT INTO pulltrace_rollups (dim, key, day, {_ROLL_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dim, key, day) DO UPDATE SET"
            " count = excluded.count, failures = excluded.failures, bytes = excluded.bytes,"
            " duration_max = excluded.duration_max, speed_max = excluded.speed_max,"
            " durations = excluded.durations, speeds = excluded.speeds",
            upserts,
        )


def _recompute_maxima(db: Connection, keys: list[Key]) -> None:
    """After pulls were taken away, the rows' maxima from what is left: a day's from its
    pulls, the all-time row's from its days."""
    for dim, key, day in sorted(keys, key=lambda k: k[2] == ALL):
        column = _GROUP_COLUMNS[dim]
        if day == ALL:
            (top,) = db.run(
                "SELECT max(duration_max), max(speed_max) FROM pulltrace_rollups"
                " WHERE dim = ? AND key = ? AND day >= 0",
                [dim, key],
            )
        else:
            (top,) = db.run(
                "SELECT max(duration), max(avg_speed) FROM pulltrace_pulls"
                f" WHERE {column} = ? AND finished_at >= ? AND finished_at < ?",
                [key, float(day * DAY), float((day + 1) * DAY)],
            )
        db.run(
            "UPDATE pulltrace_rollups SET duration_max = ?, speed_max = ?"
            " WHERE dim = ? AND key = ? AND day = ?",
            [top[0] or 0.0, top[1] or 0.0, dim, key, day],
        )


def after_migration(db: Connection, version: int) -> None:
    """What a migration does beyond its statements: version 2 counts the pulls a version 1
    database already holds into the new rollups."""
    if version == 2:
        facts = db.run(f"SELECT {_FACT_COLUMNS} FROM pulltrace_pulls")
        apply_rolls(db, roll_up(facts), 1)


def _row(p: FinishedPull) -> Row:
    finished = p.completed_at or p.started_at
    return (
        p.id,
        p.node_name,
        p.image_ref,
        p.repository,
        p.phase,
        finished.timestamp() if finished else 0.0,
        p.duration_seconds,
        p.downloaded_bytes,
        p.average_bytes_per_sec,
        p.peak_bytes_per_sec,
        _encoder.encode(p).decode(),
    )


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(float(t), UTC)
