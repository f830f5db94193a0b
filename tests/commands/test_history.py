"""``pulltrace history``, ``stats`` and ``updates`` against a real collector on loopback (uvicorn
in a thread, the history in SQLite in a temporary directory), run through ``pulltrace.cli.main``
as a user runs them: table and JSON output, filters, pages, dismissing, the error lines, hostile
strings, and ``--demo``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulltrace.cli import main
from pulltrace.cli.demo_collector import collector_endpoint
from pulltrace.client.connect import Plan, ResolveError
from pulltrace.client.endpoint import Endpoint
from pulltrace.client.history import NO_HISTORY, HistoryClient
from pulltrace.model import HistoryList, HistoryStats, UpdateList
from tests.collector.conftest import FAST, Running, body, layer, pull

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\u202egnp.evil"
FOREVER = 5 * 365 * 86400.0


QUICK = replace(FAST, reports_per_second=1000.0, history_flush_interval=0.05)
"""Reports as fast as the tests send them, and the history written at once."""


@pytest.fixture
def seeded(launch: Callable[..., Running], tmp_path: Path) -> Running:
    """The demo's week of pulls and two DIUN notices, in a SQLite database of the test's."""
    return launch(base=QUICK, data_dir=str(tmp_path / "data"), demo_history_seed=7)


@pytest.fixture
def paged(launch: Callable[..., Running], tmp_path: Path) -> Running:
    """Seed 4's week is 1031 pulls: more than one page of the collector's (1000)."""
    return launch(base=QUICK, data_dir=str(tmp_path / "data"), demo_history_seed=4)


@pytest.fixture
def empty(launch: Callable[..., Running], tmp_path: Path) -> Running:
    return launch(base=QUICK, data_dir=str(tmp_path / "data"), history_retention=FOREVER)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def history_json(capsys: pytest.CaptureFixture[str], server: str, *args: str) -> HistoryList:
    code, out, err = run(capsys, "history", "--server", server, "-o", "json", *args)
    assert code == 0, err
    return msgspec.json.decode(out, type=HistoryList)


def recorded(url: str, count: int) -> None:
    """The writer flushes in the background: wait until the rows are there, as a user would."""
    client = HistoryClient(Endpoint(url))
    for _ in range(1500):
        if len(client.history(limit=count).pulls) >= count:
            return
        httpx.get(url + "/healthz")  # one round trip between looks
    raise AssertionError(f"fewer than {count} pulls recorded")


# -- history -------------------------------------------------------------------------------


def test_history_table_lists_the_newest_first(
    seeded: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "history", "--server", seeded.url, "--limit", "5")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["IMAGE", "NODE", "PHASE", "TOOK", "SIZE", "AVG", "SPEED", "AGE"]
    assert len(lines) == 6
    page = history_json(capsys, seeded.url, "--limit", "5")
    for line, finished in zip(lines[1:], page.pulls, strict=True):
        assert line.startswith(finished.image_ref) and finished.node_name in line
    finished_at = [p.completed_at for p in page.pulls]
    assert finished_at == sorted(finished_at, reverse=True)  # type: ignore[type-var]


def test_history_wide_adds_the_columns(seeded: Running, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "history", "--server", seeded.url, "-o", "wide", "--limit", "3")
    assert code == 0, err
    header = out.splitlines()[0]
    for column in ("PEAK SPEED", "LAYERS", "PODS", "DIGEST", "FINISHED", "ERROR"):
        assert column in header


def test_history_json_is_the_collectors_structs(
    seeded: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = history_json(capsys, seeded.url, "--limit", "20")
    theirs = HistoryClient(Endpoint(seeded.url)).history(limit=20)
    assert mine.pulls == theirs.pulls
    assert mine.continue_ == theirs.continue_ and mine.continue_  # more pages wait


def test_history_follows_pages_up_to_the_limit(
    paged: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    """More than one page of the collector's (at most 1000): the pages join without gaps or
    repeats, newest first, and stop at --limit."""
    every = history_json(capsys, paged.url, "--limit", "100000")
    assert len(every.pulls) == 1031 and every.continue_ is None
    assert len({p.id for p in every.pulls}) == len(every.pulls)
    some = history_json(capsys, paged.url, "--limit", "1001")
    assert [p.id for p in some.pulls] == [p.id for p in every.pulls[:1001]]
    assert some.continue_


@pytest.mark.parametrize(
    ("flags", "check"),
    [
        (["--node", "gpu-01"], lambda p: p.node_name == "gpu-01"),
        (["--phase", "failed"], lambda p: p.phase == "failed"),
        (["--image", "redis"], lambda p: "redis" in p.image_ref),
    ],
)
def test_history_filters(
    seeded: Running,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    check: Callable[[Any], bool],
) -> None:
    page = history_json(capsys, seeded.url, "--limit", "2000", *flags)
    assert page.pulls and all(check(p) for p in page.pulls)
    every = history_json(capsys, seeded.url, "--limit", "100000")
    assert len(page.pulls) == sum(1 for p in every.pulls if check(p))


def test_history_since_and_until(seeded: Running, capsys: pytest.CaptureFixture[str]) -> None:
    day = history_json(capsys, seeded.url, "--limit", "100000", "--since", "24h")
    week = history_json(capsys, seeded.url, "--limit", "100000", "--since", "7d")
    older = history_json(capsys, seeded.url, "--limit", "100000", "--until", "24h")
    assert 0 < len(day.pulls) < len(week.pulls)
    assert len(day.pulls) + len(older.pulls) == len(week.pulls)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--since", "soon"], "--since: 'soon' is neither a duration"),
        (["--phase", "pulling"], "--phase: completed or failed"),
    ],
)
def test_history_bad_flags_are_one_line(
    seeded: Running, capsys: pytest.CaptureFixture[str], args: list[str], line: str
) -> None:
    code, out, err = run(capsys, "history", "--server", seeded.url, *args)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("pulltrace: ") and line in err


def test_hostile_strings_are_escaped_in_the_tables(
    empty: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = pull("h1", layers=[layer(0, done=10)], phase="failed", error=HOSTILE)
    reply = httpx.post(empty.url + "/api/v1/report", content=body("node-a", [failed]))
    assert reply.status_code == 204, reply.text
    notice = {"image": "docker.io/library/nginx:1.27", "status": HOSTILE, "platform": HOSTILE}
    reply = httpx.post(empty.url + "/api/v1/webhooks/diun", json=notice)
    assert reply.status_code == 204, reply.text
    recorded(empty.url, 1)
    for command in (["history", "-o", "wide"], ["updates"]):
        code, out, err = run(capsys, *command, "--server", empty.url)
        assert code == 0, err
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
        assert "\\x1b]0;pwned\\x07" in out and "\\u202e" in out
    code, out, _ = run(capsys, "updates", "--server", empty.url, "-o", "json")
    assert "\u202e" not in out and json.loads(out)["updates"][0]["status"] == HOSTILE


def test_no_history_is_one_line(
    launch: Callable[..., Running], capsys: pytest.CaptureFixture[str]
) -> None:
    bare = launch(base=QUICK)
    for command in (["history"], ["stats"], ["updates"], ["updates", "dismiss", "x"]):
        code, out, err = run(capsys, *command, "--server", bare.url)
        assert (code, out) == (2, "")
        assert err.splitlines() == [f"pulltrace: {NO_HISTORY}"]


# -- stats ---------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["image", "node", "repository"])
def test_stats_table_and_json_agree(
    seeded: Running, capsys: pytest.CaptureFixture[str], by: str
) -> None:
    code, out, err = run(capsys, "stats", "--server", seeded.url, "--by", by, "-o", "json")
    assert code == 0, err
    stats = msgspec.json.decode(out, type=HistoryStats)
    assert stats.by == by and len(stats.groups) > 5
    code, out, err = run(capsys, "stats", "--server", seeded.url, "--by", by)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == [by.upper(), "PULLS", "FAILED", "DOWNLOADED"]
    for line, group in zip(lines[1:], stats.groups, strict=True):
        cells = line.split()
        assert cells[:3] == [group.key, str(group.count), str(group.failures)]


def test_stats_window(seeded: Running, capsys: pytest.CaptureFixture[str]) -> None:
    def total(since: str) -> int:
        code, out, err = run(
            capsys, "stats", "--server", seeded.url, "--since", since, "-o", "json"
        )
        assert code == 0, err
        return sum(g["count"] for g in json.loads(out)["groups"])

    assert 0 < total("24h") < total("7d") <= total("")


def test_stats_by_something_else_is_a_usage_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "stats", "--demo", "--by", "pod")
    assert code == 2 and out == "" and len(err.splitlines()) == 1


# -- updates -------------------------------------------------------------------------------


def test_dismiss_hides_an_update_until_all(
    seeded: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "updates", "--server", seeded.url, "-o", "json")
    assert code == 0, err
    updates = msgspec.json.decode(out, type=UpdateList).updates
    assert len(updates) == 2 and not any(u.acknowledged for u in updates)
    image = updates[0].image
    code, out, err = run(capsys, "updates", "dismiss", image, "--server", seeded.url)
    assert (code, out.strip(), err) == (0, f"dismissed {image}", "")

    code, out, err = run(capsys, "updates", "--server", seeded.url)
    assert code == 0, err
    assert image not in out and updates[1].image in out
    code, out, err = run(capsys, "updates", "--all", "--server", seeded.url)
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines()[1:]}
    assert rows == {image: "dismissed", updates[1].image: "new"}
    code, out, err = run(capsys, "updates", "--server", seeded.url, "--all", "-o", "json")
    acknowledged = {u["image"]: u["acknowledged"] for u in json.loads(out)["updates"]}
    assert acknowledged == {image: True, updates[1].image: False}

    # the group's flags reach the subcommand too, kubectl-style
    code, _, err = run(capsys, "updates", "--server", seeded.url, "dismiss", updates[1].image)
    assert code == 0, err
    code, out, err = run(capsys, "updates", "--server", seeded.url)
    assert out == "No new image updates (2 dismissed: --all shows them).\n"


def test_dismissing_an_unknown_image_is_one_line(
    seeded: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    image = "registry.example:5000/team/app:1.0"
    code, out, err = run(capsys, "updates", "dismiss", image, "--server", seeded.url)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"pulltrace: collector at {seeded.url} answered 404: no update for image {image!r}"
    ]


def test_tags_group_updates(seeded: Running) -> None:
    """The client calls the TUI uses: create a tag, put an update under it, untag it."""
    client = HistoryClient(Endpoint(seeded.url))
    tag = client.create_tag("production")
    assert client.tags().tags == [tag]
    image = client.updates().updates[0].image
    client.set_tag(image, tag.id)
    assert {u.image: u.tag for u in client.updates().updates}[image] == tag
    client.set_tag(image, None)
    assert {u.image: u.tag for u in client.updates().updates}[image] is None


# -- sources -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["history", "stats", "updates"])
def test_demo_shows_real_rows(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, command, "--demo", "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    rows = doc.get("pulls") or doc.get("groups") or doc.get("updates")
    assert rows and (command != "updates" or len(rows) == 2)
    code, out, err = run(capsys, command, "--demo")
    assert code == 0, err
    assert len(out.splitlines()) == len(rows) + 1  # the header, then a row each


@pytest.mark.parametrize(
    ("plan", "why"),
    [
        (Plan("containerd", containerd="/run/containerd/containerd.sock"), "a containerd socket"),
        (
            Plan("api", notice="no collector service pulltrace/pulltrace-collector; API only"),
            "but no collector service pulltrace/pulltrace-collector",
        ),
    ],
)
def test_a_source_without_a_collector_says_what_is_needed(plan: Plan, why: str) -> None:
    with pytest.raises(ResolveError) as caught, collector_endpoint(plan, "history"):
        pass
    message = str(caught.value)
    assert message.startswith("history needs the pulltrace collector (--server URL")
    assert why in message and "\n" not in message


# -- the collector's flags, end to end ----------------------------------------------------------


def test_a_collector_started_with_data_dir_serves_history_to_the_cli(tmp_path: Path) -> None:
    """``pulltrace collector --data-dir`` as a process, with PULLTRACE_DATA_DIR pointing at an
    unusable path: the flag wins over the variable, the finished pull lands in SQLite, and
    ``pulltrace history`` (another process) reads it back."""
    import subprocess
    import sys

    from tests.collector.test_process import hermetic_env

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    data = tmp_path / "data"
    command = [sys.executable, "-m", "pulltrace.cli", "collector", "--listen", "127.0.0.1:0"]
    command += ["--metrics-listen", "127.0.0.1:0", "--data-dir", str(data)]
    command += ["--history-retention", "3650d", "--history-max-pulls", "10", "--max-pulls", "50"]
    env = hermetic_env(tmp_path, PULLTRACE_DATA_DIR=str(blocker / "data"))
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip
    try:
        assert proc.stdout is not None
        url = ""
        for raw in proc.stdout:
            line = json.loads(raw)
            if line["msg"] == "collector listening":
                url = f"http://{line['api']}"
                break
        assert url, proc.stderr.read() if proc.stderr else ""
        done = pull("p1", layers=[layer(0, done=1000)])
        reply = httpx.post(url + "/api/v1/report", content=body("node-a", [done]))
        assert reply.status_code == 204, reply.text
        for raw in proc.stdout:  # the store's event log: the pull finished
            if json.loads(raw)["msg"] == "pull.completed":
                break
        recorded(url, 1)
        out = subprocess.run(
            [sys.executable, "-m", "pulltrace.cli", "history", "--server", url, "-o", "json"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        (finished,) = json.loads(out.stdout)["pulls"]
        assert finished["id"] == "p1" and finished["phase"] == "completed"
        assert (data / "history.db").is_file()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_demo_collector_cleans_up_after_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``--demo`` runs: a seeded collector while the block lasts; afterwards its port is
    closed and its temporary database gone."""
    import tempfile

    from pulltrace.cli.demo_collector import demo_collector
    from pulltrace.client.endpoint import CollectorError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with demo_collector(3) as endpoint:
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith("pulltrace-demo-")]
        client = HistoryClient(endpoint)
        assert len(client.history(limit=10).pulls) == 10
        assert len(client.updates().updates) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("pulltrace-demo-")]
    with pytest.raises(CollectorError, match="cannot reach the collector"):
        client.updates()


@pytest.mark.k8s
def test_through_the_kubeconfigs_service_proxy(
    seeded: Running,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No --server: the kubeconfig's API server (the double) proxies to the collector's
    service, for the reads and for dismiss's PATCH, whose image path it passes on encoded."""
    from testkit.kube.apiserver import ApiServer
    from testkit.kube.service_proxy import ServiceProxy

    for name in ("PULLTRACE_SERVER", "PULLTRACE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with ApiServer(token="kube-token") as api:
        ServiceProxy(api).expose("pulltrace", "pulltrace-collector:http", seeded.url)
        kubeconfig = str(api.kubeconfig(tmp_path / "kubeconfig", namespace="shop"))
        source = ("--kubeconfig", kubeconfig)
        page = msgspec.json.decode(
            run(capsys, "history", *source, "-o", "json", "--limit", "1500")[1], type=HistoryList
        )
        assert len(page.pulls) == 992  # seed 7's week, all of it
        code, out, err = run(capsys, "stats", *source, "--by", "node")
        assert code == 0 and "gpu-01" in out, err
        code, out, err = run(capsys, "updates", *source, "-o", "json")
        image = json.loads(out)["updates"][0]["image"]
        code, out, err = run(capsys, "updates", "dismiss", image, *source)
        assert code == 0, err
        code, out, err = run(capsys, "updates", *source, "--all", "-o", "json")
        assert {u["image"]: u["acknowledged"] for u in json.loads(out)["updates"]}[image] is True
        proxied = [r.path for r in api.requests if "/proxy/api/v1/updates/" in r.path]
        assert proxied == [
            "/api/v1/namespaces/pulltrace/services/pulltrace-collector:http/proxy/api/v1/updates/"
            + quote(image, safe="")
        ]


# -- the formats, for any strings a peer sends -------------------------------------------------


@given(
    image=st.text(max_size=600),
    status=st.text(max_size=300),
    tag=st.text(min_size=1, max_size=63),
    error=st.text(max_size=500),
    node=st.text(max_size=300),
)
@settings(max_examples=150, deadline=None)
def test_every_table_line_is_printable_whatever_the_strings(
    image: str, status: str, tag: str, error: str, node: str
) -> None:
    """Hostile input is normal input: whatever the collector relays (DIUN's fields, an agent's
    error), each table line is printable and bounded, and JSON decodes to the same strings."""
    from datetime import UTC, datetime

    from pulltrace.commands.history import format_history, format_stats, format_updates
    from pulltrace.model import FinishedPull, ImageUpdate, Quantiles, StatsGroup, Tag

    now = datetime(2026, 3, 23, 12, tzinfo=UTC)
    update = ImageUpdate(image=image, status=status, platform=status, digest=status,
                         received_at=now, tag=Tag(id=1, name=tag))  # fmt: skip
    finished = FinishedPull(id="p", node_name=node, image_ref=image, phase="failed",
                            error=error, manifest_digest=status, completed_at=now)  # fmt: skip
    zero = Quantiles(p50=0, p95=0, max=0)
    group = StatsGroup(key=image, count=1, failures=1, bytes=0, duration_seconds=zero,
                       average_bytes_per_sec=zero)  # fmt: skip
    tables = [
        format_updates(UpdateList(updates=[update]), "table", now=now),
        format_history(HistoryList(pulls=[finished]), "wide", now=now),
        format_stats(HistoryStats(by="image", groups=[group]), "table"),
    ]
    for table in tables:
        for line in table.splitlines():
            assert line.isprintable() and len(line) < 3000, line
    text = format_updates(UpdateList(updates=[update]), "json")
    assert text.endswith("\n") and text[:-1].isprintable()
    doc = json.loads(text)
    assert doc["updates"][0]["status"] == status and doc["updates"][0]["image"] == image


def test_a_live_demo_collector_hears_from_the_simulated_agents() -> None:
    """``live=True`` (for ``watch --demo``): the simulated agents report over HTTP, so the
    collector's stream carries their pulls, with the simulation's pods matched to them."""
    from pulltrace.cli.demo_collector import demo_collector

    with (
        demo_collector(5, live=True) as endpoint,
        httpx.stream("GET", endpoint.url("/api/v1/events"), timeout=30) as stream,
    ):
        kind, event = "", {"pull": {}}
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind == "pull.started":
                event = json.loads(line.removeprefix("data: "))
                break
        nodes = httpx.get(endpoint.url("/api/v1/nodes")).json()["nodes"]
    assert event["pull"].get("pods") and event["pull"]["nodeName"]
    assert len(nodes) == 20 and {n["state"] for n in nodes} <= {"ready", "degraded"}
