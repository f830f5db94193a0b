"""``kill -9`` during a burst of finished pulls: the collector as a real process
(``pulltrace collector``, configured through its environment as the chart does), killed while
agents' reports pour in and a client reads the history. Every pull the history had shown
before the kill is there afterwards, SQLite's file passes ``PRAGMA integrity_check``, and the
restarted collector serves them."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pulltrace.collector.history.base import HistoryQuery, SqlHistory
from pulltrace.collector.history.postgres import PostgresHistory
from pulltrace.collector.history.sqlite import SqliteHistory
from testkit.util import free_port, wait_for
from tests.collector.conftest import body, layer, pull
from tests.collector.test_process import hermetic_env

NODES = 40
PULLS_PER_REPORT = 25
SEEN_BEFORE_KILL = 300


class Collector:
    def __init__(self, home: Path, where: dict[str, Any]) -> None:
        self.port = free_port()
        env = {
            "PULLTRACE_HISTORY_RETENTION": "3650d",
            "PULLTRACE_LOG_LEVEL": "warning",
        }
        if "data_dir" in where:
            env["PULLTRACE_DATA_DIR"] = where["data_dir"]
        else:
            env["PULLTRACE_DATABASE"] = where["database"]
        self.log = (home / f"collector-{self.port}.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pulltrace.cli", "collector",
             "--listen", f"127.0.0.1:{self.port}", "--metrics-listen", "127.0.0.1:0"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=hermetic_env(home, **env),
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        wait_for(self._healthy, 20, "the collector to serve", ignore=(httpx.HTTPError,))

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, "the collector exited"
        return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture
def collectors(tmp_path: Path) -> Iterator[list[Collector]]:
    started: list[Collector] = []
    yield started
    for collector in started:
        collector.kill()


def finished(node: int, report: int, n: int) -> Any:
    return pull(f"n{node}-r{report}-p{n}", node=f"node-{node}",
                digest=f"sha256:{node:016x}{report:024x}{n:024x}",
                layers=[layer(0, done=1000, pull=f"{node}-{report}-{n}")])  # fmt: skip


def burst(url: str, stop: threading.Event, acknowledged: list[str]) -> None:
    """Agents' reports, each node in turn, until told to stop or the collector is gone."""
    report = 0
    with httpx.Client(base_url=url, timeout=5) as client:
        while not stop.is_set():
            report += 1
            for node in range(NODES):
                pulls = [finished(node, report, n) for n in range(PULLS_PER_REPORT)]
                try:
                    reply = client.post("/api/v1/report", content=body(f"node-{node}", pulls))
                except httpx.HTTPError:
                    return
                if reply.status_code == 204:
                    acknowledged += [p.id for p in pulls]


def open_store(where: dict[str, Any]) -> SqlHistory:
    if "data_dir" in where:
        return SqliteHistory(where["data_dir"])
    return PostgresHistory(where["database"])


def stored_ids(store: SqlHistory) -> set[str]:
    ids: set[str] = set()
    after = None
    while True:
        page, after = store.query(HistoryQuery(limit=1000, after=after))
        ids.update(p.id for p in page)
        if after is None:
            return ids


def test_kill_9_during_a_burst_loses_nothing_shown_and_corrupts_nothing(
    tmp_path: Path, where: dict[str, Any], collectors: list[Collector]
) -> None:
    first = Collector(tmp_path, where)
    collectors.append(first)
    stop = threading.Event()
    acknowledged: list[str] = []
    writer = threading.Thread(target=burst, args=(first.url, stop, acknowledged), daemon=True)
    writer.start()
    shown: set[str] = set()
    try:
        with httpx.Client(base_url=first.url, timeout=10) as client:

            def enough_shown() -> bool:
                page = client.get("/api/v1/history", params={"limit": "1000"})
                assert page.status_code == 200, page.text
                shown.update(p["id"] for p in page.json()["pulls"])
                return len(shown) >= SEEN_BEFORE_KILL

            wait_for(enough_shown, 60, f"{SEEN_BEFORE_KILL} pulls in the history")
        first.kill()  # mid-burst: the writer thread is still posting
    finally:
        stop.set()
        writer.join(timeout=30)
    assert acknowledged and shown <= set(acknowledged)

    store = open_store(where)
    try:
        if isinstance(store, SqliteHistory):
            assert store.integrity() == "ok"
        kept = stored_ids(store)
    finally:
        store.close()
    assert shown <= kept, f"{len(shown - kept)} pulls shown before the kill are gone"
    assert kept <= set(acknowledged)

    second = Collector(tmp_path, where)
    collectors.append(second)
    with httpx.Client(base_url=second.url, timeout=10) as client:
        served: set[str] = set()
        query: dict[str, str] = {"limit": "1000"}
        while True:
            page = client.get("/api/v1/history", params=query).json()
            served.update(p["id"] for p in page["pulls"])
            if page["continue"] is None:
                break
            query["continue"] = page["continue"]
    assert served == kept
