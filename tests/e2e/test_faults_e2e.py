"""Issue 11's fault run: the collector killed with SIGKILL mid-pull, and containerd restarted
mid-pull, with the shipped ``pulltrace agent`` and ``pulltrace collector`` as processes.

What must hold is the truth of what users see: nothing is lost (the pull in flight reappears
after the collector comes back, because the agent's next report is complete), nothing is
duplicated (one pull per image and node), and no state is false (never ``completed`` before the
CRI call returned, never ``failed`` for a pull that went on to succeed uninterrupted).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from pulltrace.model import PullList, PullStatus
from testkit.containerd import Containerd
from testkit.cri import start_cri_pull
from testkit.images import ImagePusher
from testkit.kube.apiserver import ApiServer
from testkit.proxy import ThrottleProxy
from testkit.stack import READ_TOKEN, Collector, EventRecorder, start_agent, start_collector
from testkit.util import MiB, free_port

pytestmark = pytest.mark.e2e

NODE = "e2e-faults"
WAIT = 30.0
"""An upper bound for things that take a second or two; never a duration being tested."""
CRAWL = 128 * 1024
"""Slow enough that the pull is certainly still running while the fault is dealt with."""
FAST = 8 * MiB


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiServer]:
    with ApiServer(token="kube") as server:
        yield server


def kill_9(collector: Collector) -> None:
    os.killpg(collector.process.proc.pid, signal.SIGKILL)
    collector.process.proc.wait(10)


def pulls_of(collector: Collector, digest: str) -> list[PullStatus]:
    with collector.client() as http:
        body = http.get("/api/v1/pulls").raise_for_status().content
    listed = msgspec.json.decode(body, type=PullList)
    return [p for p in listed.pulls if p.manifest_digest == digest and p.node_name == NODE]


def test_a_collector_killed_mid_pull_shows_the_pull_again_once_and_truly(
    throttled_containerd: Containerd,
    throttle: ThrottleProxy,
    pusher: ImagePusher,
    api: ApiServer,
    tmp_path: Path,
) -> None:
    daemon = throttled_containerd
    image = pusher.image(2, 2 * MiB)
    listen = f"127.0.0.1:{free_port()}"
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    throttle.set_rate(CRAWL)
    first = start_collector(kubeconfig, tmp_path, listen=listen)
    second: Collector | None = None
    agent = start_agent(first.url, NODE, daemon.address, home=tmp_path)
    recorders: list[EventRecorder] = []
    try:
        before = EventRecorder(f"{first.url}/api/v1/events", READ_TOKEN).start()
        recorders.append(before)
        cri = start_cri_pull(daemon.address, image.ref_at(throttle.host_port))
        mine = image.manifest_digest
        before.wait_event(
            lambda e: e.pull.manifest_digest == mine and e.pull.downloaded_bytes > 0,
            "bytes of the pull at the first collector",
            WAIT,
        )
        kill_9(first)
        assert not cri.done(), "the pull finished before the fault: the test proves nothing"

        second = start_collector(kubeconfig, tmp_path, listen=listen)
        after = EventRecorder(f"{second.url}/api/v1/events", READ_TOKEN).start()
        recorders.append(after)
        back = after.wait_event(
            lambda e: e.pull.manifest_digest == mine, "the pull at the restarted collector", WAIT
        )
        assert back.pull.phase in ("resolving", "pulling")
        assert back.pull.downloaded_bytes > 0  # carried on, not started over
        throttle.set_rate(FAST)
        cri.wait(120)
        done = after.wait_event(
            lambda e: e.pull.manifest_digest == mine and e.pull.phase == "completed",
            "the pull to complete at the restarted collector",
            WAIT,
        )
        assert done.pull.downloaded_bytes + done.pull.cached_bytes == done.pull.total_bytes
        (listed,) = pulls_of(second, mine)
        assert listed.phase == "completed" and listed.id == done.pull.id
        for recorder in recorders:
            mine_events = [e for e in recorder.events() if e.pull.manifest_digest == mine]
            assert {e.pull.phase for e in mine_events} <= {"resolving", "pulling", "completed"}
            assert len({e.pull.id for e in mine_events}) == 1
        started = [e for e in after.events() if e.type == "pull.started"]
        assert len([e for e in started if e.pull.manifest_digest == mine]) <= 1
    finally:
        agent.stop()
        if second is not None:
            second.stop()
        first.process.stop()
        for recorder in recorders:
            recorder.close()


def test_containerd_restarted_mid_pull_never_shows_a_false_completion(
    throttled_containerd: Containerd,
    throttle: ThrottleProxy,
    pusher: ImagePusher,
    api: ApiServer,
    tmp_path: Path,
) -> None:
    daemon = throttled_containerd
    image = pusher.image(2, 2 * MiB)
    mine = image.manifest_digest
    throttle.set_rate(CRAWL)
    collector = start_collector(api.kubeconfig(tmp_path / "kubeconfig"), tmp_path)
    agent = start_agent(collector.url, NODE, daemon.address, home=tmp_path)
    events = EventRecorder(f"{collector.url}/api/v1/events", READ_TOKEN).start()
    try:
        cri = start_cri_pull(daemon.address, image.ref_at(throttle.host_port))
        events.wait_event(
            lambda e: e.pull.manifest_digest == mine and e.pull.downloaded_bytes > 0,
            "bytes of the pull",
            WAIT,
        )
        daemon.restart(kill=True)
        with pytest.raises(Exception):  # noqa: B017 - the CRI call dies with its daemon
            cri.wait(60)
        interrupted = len(events.events())
        throttle.set_rate(FAST)
        retry = start_cri_pull(daemon.address, image.ref_at(throttle.host_port))  # kubelet's
        retry.wait(120)
        events.wait_event(
            lambda e: e.pull.manifest_digest == mine and e.pull.phase == "completed",
            "the retried pull to complete",
            WAIT,
        )
        history = [e for e in events.events() if e.pull.manifest_digest == mine]
        early = [e for e in history[:interrupted] if e.pull.phase == "completed"]
        assert early == [], "completed before any CRI call had succeeded"
        # The retry resumes the ingest containerd kept on disk: one pull, not a failed one and
        # a second beside it.
        (final,) = pulls_of(collector, mine)
        assert final.phase == "completed" and final.error == ""
        assert {e.pull.id for e in history} == {final.id}
        assert final.downloaded_bytes + final.cached_bytes == final.total_bytes
    finally:
        agent.stop()
        collector.stop()
        events.close()
