"""From the live store's events to history rows, without blocking the event loop.

``on_event`` runs on the loop for every event the store emits: it notes each pull's peak speed
and, when a pull is completed or failed (or a finished pull changes, as when its pods are
matched late), queues its row. That is a dict lookup and a deque append. A writer thread drains
the queue at least every ``flush_interval`` and writes each batch in one transaction, so a
collector killed with SIGKILL loses at most the pulls of that last interval; SQLite's WAL (or
PostgreSQL's) makes sure a batch is either all there or not at all. The thread also applies the
retention and the size cap, every ``prune_interval``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from pulltrace.collector.history.base import HistoryBackend
from pulltrace.model import FinishedPull, PullEvent, PullStatus

log = logging.getLogger("pulltrace.collector.history")

_TERMINAL = frozenset({"completed", "failed"})
_RECORDED = frozenset({"pull.completed", "pull.failed", "pull.progress"})
PEAKS_MAX = 100_000
"""Pulls whose peak speed is tracked at once: far more than a cluster has in flight."""
BACKLOG_MAX = 200_000
"""Rows held while the database refuses writes (PostgreSQL down); the oldest go first."""
BATCH_MAX = 5_000


def finished_pull(status: PullStatus, peak: float = 0.0) -> FinishedPull:
    """What the history keeps of a finished pull: its status without the layer list (the counts
    stay), and the duration and speeds over the whole pull. The one place these are computed."""
    duration = 0.0
    if status.started_at is not None and status.completed_at is not None:
        duration = max(0.0, (status.completed_at - status.started_at).total_seconds())
    average = status.downloaded_bytes / duration if duration > 0 else 0.0
    fields = {name: getattr(status, name) for name in PullStatus.__struct_fields__}
    fields["layers"] = []
    return FinishedPull(
        **fields,
        duration_seconds=duration,
        average_bytes_per_sec=average,
        peak_bytes_per_sec=max(peak, average, status.bytes_per_sec),
    )


def live_status(pull: FinishedPull) -> PullStatus:
    """Back to the live store's struct, for the reload after a restart."""
    fields = {f: getattr(pull, f) for f in PullStatus.__struct_fields__}
    return PullStatus(**fields)


class Recorder:
    def __init__(
        self,
        backend: HistoryBackend,
        *,
        retention: float,
        max_rows: int,
        flush_interval: float = 0.5,
        prune_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.retention = retention
        self.max_rows = max_rows
        self.flush_interval = flush_interval
        self.prune_interval = prune_interval
        self._clock = clock
        self._peaks: dict[str, float] = {}
        self._queue: deque[FinishedPull] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._next_prune = 0.0
        self.written = 0
        self.dropped = 0
        self._failures = 0

    def _backoff(self) -> float:
        """While the database refuses writes (PostgreSQL restarting), retry less often, up to
        every 30 s; the rows wait in memory (``BACKLOG_MAX``)."""
        return float(min(30.0, self.flush_interval * 2 ** min(self._failures, 8)))

    # -- on the event loop -----------------------------------------------------------------

    def on_event(self, event: PullEvent) -> None:
        if event.type not in _RECORDED:
            if event.type == "pull.removed":
                self._peaks.pop(event.pull.id, None)
            return
        status = event.pull
        if status.phase not in _TERMINAL:
            if status.bytes_per_sec > self._peaks.get(status.id, 0.0):
                if len(self._peaks) >= PEAKS_MAX and status.id not in self._peaks:
                    self._peaks.pop(next(iter(self._peaks)))
                self._peaks[status.id] = status.bytes_per_sec
            return
        self._queue.append(finished_pull(status, self._peaks.get(status.id, 0.0)))
        if len(self._queue) >= BATCH_MAX:
            self._wake.set()

    # -- the writer thread -----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Writes what is queued, then stops the thread and closes the database."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.backend.close()

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self.flush_interval if not self._failures else self._backoff())
                self._wake.clear()
                stopping = self._stopping
                self.flush()
                if self._clock() >= self._next_prune:
                    self._next_prune = self._clock() + self.prune_interval
                    self._prune()
                if stopping:
                    return
        finally:
            self.backend.close()

    def flush(self) -> None:
        """Writes everything queued so far; from the writer thread (or a test's own)."""
        while self._queue:
            batch: list[FinishedPull] = []
            while self._queue and len(batch) < BATCH_MAX:
                batch.append(self._queue.popleft())
            try:
                self.backend.write(batch)
            except Exception:
                self._failures += 1
                if self._failures == 1 or self._failures % 20 == 0:
                    log.exception("history write failed; retrying",
                                  extra={"pulls": len(self._queue) + len(batch),
                                         "failures": self._failures})  # fmt: skip
                self._queue.extendleft(reversed(batch))
                excess = len(self._queue) - BACKLOG_MAX
                for _ in range(max(0, excess)):
                    self._queue.pop()
                self.dropped += max(0, excess)
                return
            self.written += len(batch)
            if self._failures:
                log.info("history writes resumed", extra={"failures": self._failures})
                self._failures = 0

    def _prune(self) -> None:
        try:
            gone = self.backend.prune(self._clock() - self.retention, self.max_rows)
        except Exception:
            log.exception("history retention failed")
            return
        if gone:
            log.info("history pruned", extra={"pulls": gone})
