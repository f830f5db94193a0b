"""Each image's install, run for real: venvs built from exactly what the Dockerfiles install
(conftest.py) run ``pulltrace agent`` against a real containerd and ``pulltrace collector``
against the Kubernetes API double, as the images' ENTRYPOINTs. A module the role imports but its
requirements file lacks shows up here as an ImportError, a warning or a failed start."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import pytest

from pulltrace.model import PodRef, PullList, PullStatus
from testkit.containerd import Containerd
from testkit.cri import start_cri_pull
from testkit.dockerfile import ROLES
from testkit.images import ImagePusher
from testkit.kube.apiserver import ApiServer
from testkit.kube.objects import pending_pod, pulled, pulling
from testkit.proxy import ThrottleProxy
from testkit.stack import (
    AGENT_TOKEN,
    READ_TOKEN,
    Collector,
    LoggedProcess,
    start_agent,
    start_collector,
)
from testkit.util import MiB, wait_for
from tests.collector.conftest import body, pull
from tests.images.conftest import RoleVenv
from tests.images.test_dockerfiles import pins

NODE = "image-node"
NAMESPACE = "shop"
WAIT = 30.0
"""An upper bound for things that take a second or two; never a duration being tested."""
SEEDED = {"pip", "setuptools", "wheel"}
"""What `python -m venv` (and the python base image) brings before any install."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def entrypoint(venv: RoleVenv) -> list[str]:
    """The ENTRYPOINT without its role argument, which start_agent/start_collector add."""
    *command, role = venv.entrypoint()
    assert role == venv.role
    return command


def only_json_lines(process: LoggedProcess) -> None:
    """A traceback, an ImportError or a library warning would be a line that is not JSON."""
    stray = []
    for line in process.lines():
        try:
            json.loads(line)
        except ValueError:
            stray.append(line)
    assert stray == [], process.tail()


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer(token="kube-secret") as server:
        yield server


def start_image_collector(venv: RoleVenv, api: ApiServer, home: Path) -> Collector:
    """Returns once /readyz is 200: the kubernetes client has listed pods and events."""
    return start_collector(
        api.kubeconfig(home / "kubeconfig"),
        home,
        agent_token=AGENT_TOKEN,
        read_token=READ_TOKEN,
        command=entrypoint(venv),
    )


@pytest.mark.parametrize("role", ROLES)
def test_the_venv_holds_exactly_the_requirements_and_pulltrace(
    role: str, role_venv: Callable[[str], RoleVenv]
) -> None:
    venv = role_venv(role)
    installed = {canonical(k): v for k, v in venv.distributions().items()}
    expected = {canonical(k): v for k, v in pins(role).items()}
    assert {k: v for k, v in installed.items() if k not in SEEDED} == {
        **expected,
        "pulltrace": installed.get("pulltrace", "missing"),
    }
    where = subprocess.run(
        [str(venv.python), "-I", "-c", "import pulltrace; print(pulltrace.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=venv.path,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv.path), where


def test_the_collector_install_serves_probes_a_report_and_metrics(
    role_venv: Callable[[str], RoleVenv], api: ApiServer, tmp_path: Path
) -> None:
    collector = start_image_collector(role_venv("collector"), api, tmp_path)
    try:
        health = httpx.get(f"{collector.url}/healthz", timeout=10.0)
        report = pull("image-1", node=NODE)
        posted = httpx.post(
            f"{collector.url}/api/v1/report",
            content=body(NODE, [report]),
            headers={
                "Authorization": f"Bearer {AGENT_TOKEN}",
                "Content-Type": "application/json",
            },
            timeout=10.0,
        )
        with collector.client() as client:
            listed = client.get("/api/v1/pulls", params={"node": NODE})
        accepted = collector.metric("pulltrace_agent_reports_total", result="accepted")
    finally:
        code = collector.stop()
    assert health.status_code == 200
    assert posted.status_code == 204, posted.text
    assert listed.status_code == 200, listed.text
    pulls = msgspec.json.decode(listed.content, type=PullList).pulls
    assert [(p.node_name, p.repository, p.manifest_digest) for p in pulls] == [
        (NODE, report.repository, report.manifest_digest)
    ]
    assert accepted == 1
    assert code == 0, collector.process.tail()
    only_json_lines(collector.process)


@pytest.mark.e2e
def test_the_agent_install_reports_a_real_pull_to_the_collector_install(
    role_venv: Callable[[str], RoleVenv],
    containerd: Containerd,
    throttle: ThrottleProxy,
    pusher: ImagePusher,
    api: ApiServer,
    tmp_path: Path,
) -> None:
    """The whole path through the two installs: containerd -> agent -> collector, with the pod
    named through the Kubernetes API, as in a cluster running the two images."""
    image = pusher.image(2, 2 * MiB)  # about 2 s through the 2 MiB/s throttle
    ref = image.ref_at(throttle.host_port)
    web = pending_pod("web", NODE, ref, namespace=NAMESPACE)
    api.add(web)
    agent_venv = role_venv("agent")
    collector = start_image_collector(role_venv("collector"), api, tmp_path)
    agent: LoggedProcess | None = None
    codes: dict[str, int] = {}
    try:
        agent = start_agent(
            collector.url,
            NODE,
            containerd.address,
            token=AGENT_TOKEN,
            home=tmp_path,
            command=entrypoint(agent_venv),
        )

        def agent_connected() -> bool:
            assert agent is not None
            agent.check_alive()
            return collector.metric("pulltrace_agents_connected") == 1

        wait_for(agent_connected, WAIT, "the agent's first report")
        api.add(pulling(web, datetime.now(UTC)))
        cri = start_cri_pull(containerd.address, ref)
        cri.wait(60)
        api.add(pulled(web, datetime.now(UTC), seconds=cri.elapsed, size=image.total_size))

        def completed() -> PullStatus | None:
            assert agent is not None
            agent.check_alive()
            with collector.client() as client:
                listed = client.get("/api/v1/pulls", params={"node": NODE})
            pulls = msgspec.json.decode(listed.content, type=PullList).pulls
            return next(
                (
                    p
                    for p in pulls
                    if p.manifest_digest == image.manifest_digest
                    and p.phase == "completed"
                    and p.pods
                ),
                None,
            )

        done = wait_for(completed, WAIT, "the completed pull with its pod")
        assert done is not None
    finally:
        if agent is not None:
            codes["agent"] = agent.stop()
        codes["collector"] = collector.stop()
        print(collector.process.tail(100))
        if agent is not None:
            print(agent.tail(100))
    assert done.pods == [PodRef(namespace=NAMESPACE, pod_name="web", container="app")]
    assert done.total_bytes == sum(image.layer_sizes)
    assert done.image_ref == ref
    assert codes == {"agent": 0, "collector": 0}
    assert agent is not None
    only_json_lines(agent)
    only_json_lines(collector.process)
